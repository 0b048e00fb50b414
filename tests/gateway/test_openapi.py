"""The merged public OpenAPI document: the gateway's routes and every service's public ones."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel, SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from avc_common.config import Settings
from avc_common.errors import NotFound
from avc_common.web import create_service_app, error_responses
from avc_gateway.openapi import install_public_openapi, merge_public_openapi
from avc_gateway.proxy import ProxySettings, build_upstreams

SECRET = "cd" * 32


def settings() -> Settings:
    return Settings(internal_secret=SecretStr(SECRET))


class UploadStatus(BaseModel):
    upload_id: str
    status: Literal["pending", "complete"]


class Status(BaseModel):
    """Same name as media's `Status`, different shape: must not overwrite each other."""

    received: list[int]


class UploadView(BaseModel):
    status: Status


class InternalOnly(BaseModel):
    secret_field: str


def upload_app() -> FastAPI:
    router = APIRouter()

    @router.get(
        "/api/v1/upload/{upload_id}",
        response_model=UploadView,
        responses=error_responses(NotFound),
    )
    async def status(upload_id: str) -> Any:
        raise NotFound()

    @router.post("/internal/uploads", response_model=InternalOnly)
    async def internal() -> Any:
        raise NotFound()

    return create_service_app(service="upload", settings=settings(), routers=[router])


def media_app() -> FastAPI:
    class Status(BaseModel):
        state: str

    class Video(BaseModel):
        id: str
        status: Status

    router = APIRouter()

    @router.get("/api/v1/videos/{video_id}", response_model=Video)
    async def video(video_id: str) -> Any:
        raise NotFound()

    @router.get("/api/v1/embed/{token}")
    async def embed(token: str) -> dict[str, str]:
        return {}

    @router.get("/play/{playback_token}/{file_path:path}")
    async def play(playback_token: str, file_path: str) -> dict[str, str]:
        return {}

    # Not in the public table under this method: left out.
    @router.post("/api/v1/videos/{video_id}")
    async def not_public(video_id: str) -> dict[str, str]:
        return {}

    return create_service_app(service="media", settings=settings(), routers=[router])


def gateway(services: dict[str, ASGIApp], **proxy: Any) -> tuple[FastAPI, Any]:
    app = create_service_app(service="gateway", settings=settings())
    router = APIRouter()

    @router.get("/api/v1/account", response_model=UploadStatus)
    async def account() -> Any:
        raise NotFound()

    @router.post("/api/v1/api-keys")
    async def create_key() -> dict[str, str]:
        return {}

    @router.get("/api/v1/gateway-internal")
    async def hidden() -> dict[str, str]:
        return {}

    app.include_router(router)
    upstreams = build_upstreams(ProxySettings(), services)
    install_public_openapi(app, upstreams=upstreams, settings=ProxySettings(**proxy))
    return app, upstreams


async def fetch(app: FastAPI, path: str = "/api/v1/openapi.json") -> httpx.Response:
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        return await client.get(path)


async def test_whole_public_api_in_one_document() -> None:
    app, upstreams = gateway({"upload": upload_app(), "media": media_app()})
    response = await fetch(app)
    await upstreams.aclose()
    assert response.status_code == 200
    doc = response.json()
    validate(doc)

    assert set(doc["paths"]) == {
        "/api/v1/account",
        "/api/v1/api-keys",
        "/api/v1/upload/{upload_id}",
        "/api/v1/videos/{video_id}",
        "/api/v1/embed/{token}",
        "/play/{playback_token}/{file_path}",
    }
    assert set(doc["paths"]["/api/v1/videos/{video_id}"]) == {"get"}
    schemas = doc["components"]["schemas"]
    assert "InternalOnly" not in schemas
    # Two different `Status`: the first one kept its name, the other got its service's.
    assert schemas["Status"]["properties"] == {
        "received": {"items": {"type": "integer"}, "title": "Received", "type": "array"}
    }
    media_status = schemas["MediaStatus"]
    assert set(media_status["properties"]) == {"state"}
    assert schemas["Video"]["properties"]["status"] == {"$ref": "#/components/schemas/MediaStatus"}
    assert schemas["UploadView"]["properties"]["status"] == {"$ref": "#/components/schemas/Status"}
    assert "ErrorBody" in schemas

    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKeyHeader"]["description"],
    }
    assert schemes["ApiKeyQuery"]["in"] == "query"
    assert schemes["ApiKeyQuery"]["name"] == "api_key"
    assert schemes["BearerJWT"]["scheme"] == "bearer"
    assert schemes["BearerJWT"]["bearerFormat"] == "JWT"


async def test_operations_carry_their_security_and_the_gateways_errors() -> None:
    app, upstreams = gateway({"upload": upload_app(), "media": media_app()})
    doc = (await fetch(app)).json()
    await upstreams.aclose()
    paths = doc["paths"]

    upload = paths["/api/v1/upload/{upload_id}"]["get"]
    assert upload["security"] == [{"ApiKeyHeader": []}, {"ApiKeyQuery": []}, {"BearerJWT": []}]
    assert {"401", "403", "404", "429", "502", "503", "504"} <= set(upload["responses"])
    assert upload["responses"]["503"] == {"$ref": "#/components/responses/503"}
    # The service's own documented 404 is kept as it was.
    assert "upload_not_found" in str(upload["responses"]["404"]) or "not_found" in str(
        upload["responses"]["404"]
    )

    create_key = paths["/api/v1/api-keys"]["post"]
    assert create_key["security"] == [{"BearerJWT": []}]
    assert "503" not in create_key["responses"]  # served by the gateway itself

    embed = paths["/api/v1/embed/{token}"]["get"]
    assert embed["security"][0] == {}  # credentials optional
    assert "401" not in embed["responses"]

    error = doc["components"]["responses"]["429"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}


async def test_docs_page_and_default_docs_replaced() -> None:
    app, upstreams = gateway({"upload": upload_app()})
    docs = await fetch(app, "/docs")
    default = await fetch(app, "/openapi.json")
    await upstreams.aclose()
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]
    assert "/api/v1/openapi.json" in docs.text
    assert default.status_code == 404
    assert default.json()["code"] == "not_found"


class _Down:
    """A service app whose every request fails (as if it were unreachable)."""

    def __init__(self) -> None:
        self.up: FastAPI | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.up is not None:
            await self.up(scope, receive, send)
            return
        raise ConnectionError("down")


async def test_a_service_that_is_down_is_left_out_then_comes_back() -> None:
    media = _Down()
    app, upstreams = gateway({"upload": upload_app(), "media": media}, openapi_cache_seconds=0)
    without = await fetch(app)
    media.up = media_app()
    with_media = await fetch(app)
    await upstreams.aclose()
    assert without.status_code == 200
    assert "/api/v1/upload/{upload_id}" in without.json()["paths"]
    assert "/api/v1/videos/{video_id}" not in without.json()["paths"]
    assert "/api/v1/videos/{video_id}" in with_media.json()["paths"]


async def test_the_document_is_cached() -> None:
    fetched = 0
    upload = upload_app()

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal fetched
        if scope["type"] == "http" and scope["path"] == "/openapi.json":
            fetched += 1
        await upload(scope, receive, send)

    app, upstreams = gateway({"upload": counting}, openapi_cache_seconds=60)
    responses = await asyncio.gather(*(fetch(app) for _ in range(5)))
    await upstreams.aclose()
    assert all(r.status_code == 200 for r in responses)
    assert fetched == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("uvicorn stopped before starting")
                await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def test_service_documents_are_fetched_over_http_in_separate_process_mode() -> None:
    async with serve(upload_app()) as upload_url:
        dead = f"http://127.0.0.1:{free_port()}"
        upstreams = build_upstreams(ProxySettings(), urls={"upload": upload_url, "media": dead})
        app = create_service_app(service="gateway", settings=settings())
        install_public_openapi(app, upstreams=upstreams, settings=ProxySettings())
        response = await fetch(app)
        await upstreams.aclose()
    assert response.status_code == 200
    assert list(response.json()["paths"]) == ["/api/v1/upload/{upload_id}"]


async def test_installer_uses_the_upstreams_the_proxy_publishes_at_startup() -> None:
    app = create_service_app(service="gateway", settings=settings())
    install_public_openapi(app, settings=ProxySettings(openapi_cache_seconds=0))
    before = await fetch(app)  # no upstreams yet: the gateway's own routes only
    app.state.upstreams = build_upstreams(ProxySettings(), {"upload": upload_app()})
    after = await fetch(app)
    await app.state.upstreams.aclose()
    assert before.json()["paths"] == {}
    assert "/api/v1/upload/{upload_id}" in after.json()["paths"]


def _doc(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {"openapi": "3.1.0", "paths": paths, "components": {"schemas": schemas}}


def _get(ref: str) -> dict[str, Any]:
    return {
        "get": {
            "responses": {
                "200": {
                    "description": "ok",
                    "content": {"application/json": {"schema": {"$ref": ref}}},
                }
            }
        }
    }


def test_merge_renames_what_refers_to_a_renamed_component() -> None:
    """`Outer` is identical in both documents, but it refers to `Inner`, which is not: the
    media copy of `Outer` must keep pointing at media's `Inner`."""
    outer = {"type": "object", "properties": {"inner": {"$ref": "#/components/schemas/Inner"}}}
    upload = _doc(
        {"/api/v1/upload/{upload_id}": _get("#/components/schemas/Outer")},
        {"Outer": outer, "Inner": {"type": "string"}},
    )
    media = _doc(
        {"/api/v1/videos/{video_id}": _get("#/components/schemas/Outer")},
        {"Outer": outer, "Inner": {"type": "integer"}, "Unused": {"type": "null"}},
    )
    doc = merge_public_openapi(_doc({}, {}), {"upload": upload, "media": media})
    schemas = doc["components"]["schemas"]
    assert schemas["Inner"] == {"type": "string"}
    assert schemas["MediaInner"] == {"type": "integer"}
    assert schemas["MediaOuter"]["properties"]["inner"] == {
        "$ref": "#/components/schemas/MediaInner"
    }
    video = doc["paths"]["/api/v1/videos/{video_id}"]["get"]
    assert video["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/MediaOuter"
    }
    assert "Unused" not in schemas


def test_merge_shares_identical_components_and_the_error_body() -> None:
    same = {"type": "object", "properties": {"id": {"type": "string"}}}
    upload = _doc(
        {"/api/v1/upload/{upload_id}": _get("#/components/schemas/Thing")},
        {"Thing": same, "ErrorBody": {"type": "object", "title": "whatever the service had"}},
    )
    media = _doc({"/api/v1/videos/{video_id}": _get("#/components/schemas/Thing")}, {"Thing": same})
    doc = merge_public_openapi(_doc({}, {}), {"upload": upload, "media": media})
    schemas = doc["components"]["schemas"]
    assert schemas["Thing"] == same
    assert "MediaThing" not in schemas
    assert schemas["ErrorBody"]["title"] == "ErrorBody"


@pytest.mark.parametrize("service", ["upload", "webhooks"])
def test_merge_keeps_only_the_routes_the_table_gives_that_service(service: str) -> None:
    source = _doc(
        {
            "/api/v1/upload/{upload_id}": _get("#/components/schemas/X"),
            "/internal/things": _get("#/components/schemas/X"),
        },
        {"X": {"type": "string"}},
    )
    doc = merge_public_openapi(_doc({}, {}), {service: source})
    expected = ["/api/v1/upload/{upload_id}"] if service == "upload" else []
    assert list(doc["paths"]) == expected
