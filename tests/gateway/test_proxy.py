"""The gateway's proxy: the same code against a service in-process (all-in-one mode) and over
HTTP (separate processes), with a fake `admit` and small fake service apps."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
import pytest
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import SecretStr
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avc_common.config import Settings
from avc_common.errors import AppError, NotFound, Unauthorized
from avc_common.internal_auth import INTERNAL_TOKEN_HEADER, CurrentCaller
from avc_common.logging import configure_logging
from avc_common.web import LifespanManager, create_service_app
from avc_gateway.principal import Principal
from avc_gateway.proxy import (
    ProxySettings,
    Upstreams,
    build_upstreams,
    create_proxy_router,
    proxied_templates,
)
from avc_gateway.proxy.headers import (
    client_response_headers,
    has_body,
    upstream_request_headers,
    without_api_key,
)
from avc_gateway.public_routes import PUBLIC_ROUTES, PublicRoute

SECRET = "ab" * 32
API_KEY = "avc_" + "7f" * 32
MiB = 1024 * 1024


@pytest.fixture(autouse=True)
def logs() -> Iterator[io.StringIO]:
    """JSON log lines of the test (plain tracebacks: fast, and searchable for secrets)."""
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    configure_logging(service="test", level="INFO", json=True, stream=stream)
    yield stream
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


class UploadNotFound(NotFound):
    code: ClassVar[str] = "upload_not_found"
    default_message: ClassVar[str] = "Upload not found."


def settings() -> Settings:
    return Settings(internal_secret=SecretStr(SECRET))


@dataclass
class ServiceProbe:
    """What the fake service saw, so tests can look behind the gateway."""

    calls: int = 0
    stream_closed: asyncio.Event = field(default_factory=asyncio.Event)
    upload_interrupted: asyncio.Event = field(default_factory=asyncio.Event)


def fake_service(probe: ServiceProbe, name: str = "upload") -> FastAPI:
    router = APIRouter()

    @router.get("/api/v1/upload/{upload_id}")
    async def upload_status(upload_id: str, request: Request, caller: CurrentCaller) -> Any:
        probe.calls += 1
        if upload_id == "upl_missing":
            raise UploadNotFound()
        return {
            "upload_id": upload_id,
            "account_id": caller.account_id,
            "caller_request_id": caller.request_id,
            "query": request.scope["query_string"].decode(),
            "raw_path": request.scope["raw_path"].decode(),
            "headers": {k: v for k, v in request.headers.items()},
        }

    @router.post("/api/v1/upload/chunk")
    async def chunk(request: Request, caller: CurrentCaller) -> Any:
        probe.calls += 1
        digest, size = hashlib.sha256(), 0
        try:
            async for part in request.stream():
                digest.update(part)
                size += len(part)
        except ClientDisconnect:
            probe.upload_interrupted.set()
            raise
        return {"size": size, "sha256": digest.hexdigest()}

    @router.post("/api/v1/upload")
    async def crash(caller: CurrentCaller) -> Any:
        raise RuntimeError("the service broke")

    @router.get("/api/v1/videos/{video_id}")
    async def download(video_id: str, size: int, caller: CurrentCaller) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            try:
                sent = 0
                while sent < size:
                    part = b"v" * min(64 * 1024, size - sent)
                    sent += len(part)
                    yield part
                    await asyncio.sleep(0)
            finally:
                probe.stream_closed.set()

        response = StreamingResponse(body(), media_type="video/mp4")
        response.headers["content-length"] = str(size)
        response.raw_headers += [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
        response.raw_headers += [(b"connection", b"x-hop"), (b"x-hop", b"1"), (b"keep-alive", b"5")]
        return response

    @router.get("/api/v1/embed/{token}")
    async def embed(token: str, request: Request) -> Any:
        return {"token": token, "internal_token_sent": INTERNAL_TOKEN_HEADER in request.headers}

    @router.get("/api/v1/stats")
    async def stats(caller: CurrentCaller, sleep: float = 0) -> Any:
        await asyncio.sleep(sleep)
        return {"total_videos": 0}

    return create_service_app(service=name, settings=settings(), routers=[router])


@dataclass
class FakeAdmit:
    """Accepts `X-API-Key: API_KEY` (or `?api_key=`); public routes need nothing."""

    calls: list[str] = field(default_factory=list)

    async def __call__(self, request: Request, route: PublicRoute) -> Principal | None:
        self.calls.append(route.path)
        key = request.headers.get("x-api-key") or request.query_params.get("api_key")
        if key is None:
            if route.access == "public":
                return None
            raise Unauthorized()
        if key != API_KEY:
            raise Unauthorized("Invalid API key.")
        return Principal(
            account_id="acct_1",
            email="a@example.com",
            plan="enterprise",
            api_preview=False,
            method="api_key",
            key_id="key_1",
        )


def gateway_app(admit: Callable[..., Awaitable[Principal | None]], upstreams: Upstreams) -> FastAPI:
    app = create_service_app(service="gateway", settings=settings())
    app.include_router(
        create_proxy_router(admit=admit, settings=ProxySettings(), upstreams=upstreams)
    )
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serve(app: ASGIApp) -> AsyncIterator[str]:
    """Runs `app` under uvicorn on a free local port; yields its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
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


@dataclass
class Stack:
    client: httpx.AsyncClient
    probe: ServiceProbe
    admit: FakeAdmit
    gateway: FastAPI


@asynccontextmanager
async def stack(
    mode: str,
    *,
    proxy_settings: ProxySettings | None = None,
    service: ASGIApp | None = None,
    services: tuple[str, ...] = ("upload", "media", "stats"),
) -> AsyncIterator[Stack]:
    """A gateway with the proxy in front of one fake service app serving `services`."""
    probe = ServiceProbe()
    app = service if service is not None else fake_service(probe)
    admit = FakeAdmit()
    async with serve(app) if mode == "http" else _nothing() as url:
        if mode == "http":
            urls = dict.fromkeys(services, url)
            upstreams = build_upstreams(proxy_settings or ProxySettings(), urls=urls)
        else:
            upstreams = build_upstreams(
                proxy_settings or ProxySettings(), dict.fromkeys(services, app)
            )
        gateway = gateway_app(admit, upstreams)
        transport = httpx.ASGITransport(gateway, client=("203.0.113.7", 5555))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
                yield Stack(client, probe, admit, gateway)
        finally:
            await upstreams.aclose()


@asynccontextmanager
async def _nothing() -> AsyncIterator[str]:
    yield ""


MODES = pytest.mark.parametrize("mode", ["in-process", "http"])


@MODES
async def test_forwards_with_the_callers_identity_and_without_client_credentials(
    mode: str,
) -> None:
    async with stack(mode) as s:
        response = await s.client.get(
            f"/api/v1/upload/upl_1?x=1&api_key={API_KEY}&y=%20two&API%5Fkey=again",
            headers={
                "X-Request-ID": "rid-forward-1",
                "Authorization": "Bearer should-not-pass",
                INTERNAL_TOKEN_HEADER: "forged",
                "Connection": "x-custom",
                "X-Custom": "hop",
                "Proxy-Authorization": "Basic eA==",
                "X-Forwarded-For": "198.51.100.1",
                "X-Other": "kept",
            },
            params=None,
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == "rid-forward-1"
    seen = response.json()
    assert seen["account_id"] == "acct_1"
    assert seen["caller_request_id"] == "rid-forward-1"
    assert seen["query"] == "x=1&y=%20two"
    headers = seen["headers"]
    assert headers["x-request-id"] == "rid-forward-1"
    assert headers["x-other"] == "kept"
    for gone in ("authorization", "x-api-key", "x-custom", "proxy-authorization"):
        assert gone not in headers
    assert headers[INTERNAL_TOKEN_HEADER.lower()] != "forged"
    assert headers["x-forwarded-for"] == "198.51.100.1, 203.0.113.7"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "gw.test"
    assert API_KEY not in str(seen)


@MODES
async def test_api_key_in_the_query_is_checked_but_not_forwarded(mode: str) -> None:
    async with stack(mode) as s:
        response = await s.client.get(f"/api/v1/upload/upl_2?api_key={API_KEY}")
    assert response.status_code == 200, response.text
    assert response.json()["query"] == ""
    assert response.json()["account_id"] == "acct_1"


@MODES
async def test_service_errors_pass_through_unchanged(mode: str) -> None:
    async with stack(mode) as s:
        missing = await s.client.get(
            "/api/v1/upload/upl_missing", headers={"X-API-Key": API_KEY, "X-Request-ID": "r-404"}
        )
        crashed = await s.client.post(
            "/api/v1/upload", headers={"X-API-Key": API_KEY, "X-Request-ID": "r-500"}
        )
    assert missing.status_code == 404
    assert missing.json() == {
        "error": "Upload not found.",
        "code": "upload_not_found",
        "request_id": "r-404",
    }
    assert crashed.status_code == 500
    assert crashed.json() == {
        "error": "Internal server error.",
        "code": "internal_error",
        "request_id": "r-500",
    }


@MODES
async def test_public_route_without_credentials_sends_no_internal_token(mode: str) -> None:
    async with stack(mode) as s:
        anonymous = await s.client.get("/api/v1/embed/tok_1")
        signed_in = await s.client.get("/api/v1/embed/tok_1", headers={"X-API-Key": API_KEY})
    assert anonymous.json() == {"token": "tok_1", "internal_token_sent": False}
    assert signed_in.json() == {"token": "tok_1", "internal_token_sent": True}


@MODES
async def test_admission_errors_stop_the_request_at_the_gateway(mode: str) -> None:
    async with stack(mode) as s:
        none = await s.client.get("/api/v1/upload/upl_1", headers={"X-Request-ID": "r-401"})
        bad = await s.client.get("/api/v1/upload/upl_1", headers={"X-API-Key": "avc_nope"})
        calls = s.probe.calls
    assert none.status_code == 401
    assert none.json() == {
        "error": "Authentication is required.",
        "code": "unauthorized",
        "request_id": "r-401",
    }
    assert bad.status_code == 401
    assert calls == 0


async def test_unknown_path_is_404_and_wrong_method_is_405_before_admission() -> None:
    async with stack("in-process") as s:
        unknown = await s.client.get("/api/v1/nothing/here", headers={"X-Request-ID": "r-u"})
        wrong = await s.client.patch("/api/v1/videos/vid_1", headers={"X-Request-ID": "r-m"})
        head = await s.client.head("/api/v1/videos/vid_1", headers={"X-API-Key": API_KEY})
        admitted = list(s.admit.calls)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Not found.", "code": "not_found", "request_id": "r-u"}
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "GET, PUT, DELETE"
    assert wrong.json() == {
        "error": "Method not allowed.",
        "code": "method_not_allowed",
        "request_id": "r-m",
    }
    assert head.status_code == 405  # HEAD is only in the table for /play
    assert admitted == []


async def test_a_service_without_upstream_answers_503() -> None:
    async with stack("in-process", services=("upload",)) as s:
        response = await s.client.get(
            "/api/v1/stats", headers={"X-API-Key": API_KEY, "X-Request-ID": "r-503"}
        )
    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"
    assert response.json()["request_id"] == "r-503"


@MODES
async def test_request_body_is_streamed_to_the_service(mode: str) -> None:
    size = 8 * MiB + 123
    digest = hashlib.sha256()

    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            part = bytes([sent % 251]) * min(MiB, size - sent)
            digest.update(part)
            sent += len(part)
            yield part

    async with stack(mode) as s:
        response = await s.client.post(
            "/api/v1/upload/chunk", headers={"X-API-Key": API_KEY}, content=body()
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"size": size, "sha256": digest.hexdigest()}


@MODES
async def test_response_is_streamed_back_with_its_headers(mode: str) -> None:
    size = 3 * MiB + 7
    async with stack(mode) as s:
        response = await s.client.get(
            f"/api/v1/videos/vid_1?size={size}", headers={"X-API-Key": API_KEY}
        )
    assert response.status_code == 200
    assert len(response.content) == size
    assert response.headers["content-length"] == str(size)
    assert response.headers["content-type"] == "video/mp4"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert "x-hop" not in response.headers
    assert "keep-alive" not in response.headers


async def test_metrics_use_the_route_template_never_the_path_or_the_key() -> None:
    async with stack("in-process") as s:
        await s.client.get(f"/api/v1/upload/upl_secret123?api_key={API_KEY}")
        await s.client.post("/api/v1/upload/init", headers={"X-API-Key": API_KEY})
        await s.client.patch("/api/v1/videos/vid_1")
        metrics = (await s.client.get("/metrics")).text
    gateway_lines = [line for line in metrics.splitlines() if 'service="gateway"' in line]
    assert any('route="/api/v1/upload/{upload_id}"' in line for line in gateway_lines)
    assert any('route="/api/v1/upload/init"' in line for line in gateway_lines)
    assert any('route="/api/v1/videos/{video_id}"' in line for line in gateway_lines)
    assert "upl_secret123" not in metrics
    assert API_KEY not in metrics
    assert "api_key" not in metrics


class _Slow:
    """A raw ASGI service that starts its answer late or stops halfway."""

    def __init__(self, *, before: float, between: float) -> None:
        self.before = before
        self.between = between

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await asyncio.sleep(self.before)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await asyncio.sleep(self.between)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


@MODES
async def test_a_service_that_does_not_answer_in_time_gives_504(mode: str) -> None:
    quick = ProxySettings(proxy_read_timeout=0.3)
    async with stack(mode, proxy_settings=quick, service=_Slow(before=1, between=0)) as s:
        response = await s.client.get(
            "/api/v1/stats", headers={"X-API-Key": API_KEY, "X-Request-ID": "r-504"}
        )
    assert response.status_code == 504
    assert response.json() == {
        "error": "The stats service did not answer in time.",
        "code": "gateway_timeout",
        "request_id": "r-504",
    }


class _Broken:
    """A raw ASGI service that fails before answering (in-process: an invalid response)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        raise RuntimeError("no answer at all")


async def test_an_in_process_service_that_crashes_without_answering_gives_502() -> None:
    async with stack("in-process", service=_Broken()) as s:
        response = await s.client.get("/api/v1/stats", headers={"X-API-Key": API_KEY})
    assert response.status_code == 502
    assert response.json()["code"] == "bad_gateway"


async def test_a_service_that_is_down_gives_503(logs: io.StringIO) -> None:
    port = free_port()  # nothing listens there
    upstreams = build_upstreams(ProxySettings(), urls={"upload": f"http://127.0.0.1:{port}"})
    gateway = gateway_app(FakeAdmit(), upstreams)
    transport = httpx.ASGITransport(gateway)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        response = await client.get(
            f"/api/v1/upload/upl_1?api_key={API_KEY}", headers={"X-Request-ID": "r-down"}
        )
    await upstreams.aclose()
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    failed = [line for line in lines if line["event"] == "upstream_failed"]
    assert failed[0]["upstream"] == "upload"
    assert failed[0]["request_id"] == "r-down"
    assert API_KEY not in logs.getvalue()
    assert response.status_code == 503
    assert response.json() == {
        "error": "The upload service is unavailable.",
        "code": "service_unavailable",
        "request_id": "r-down",
    }


async def test_an_invalid_http_answer_gives_502() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstreams = build_upstreams(ProxySettings(), urls={"upload": f"http://127.0.0.1:{port}"})
    gateway = gateway_app(FakeAdmit(), upstreams)
    try:
        transport = httpx.ASGITransport(gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            response = await client.get("/api/v1/upload/upl_1", headers={"X-API-Key": API_KEY})
    finally:
        await upstreams.aclose()
        server.close()
        await server.wait_closed()
    assert response.status_code == 502
    assert response.json()["code"] == "bad_gateway"


async def test_a_small_answer_cut_short_gives_502_not_a_truncated_body() -> None:
    """A response of known small length is read whole before anything is sent: when the
    service closes mid-body the client gets the gateway's error, not a cut body."""

    async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(cut_short, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    upstreams = build_upstreams(ProxySettings(), urls={"upload": f"http://127.0.0.1:{port}"})
    gateway = gateway_app(FakeAdmit(), upstreams)
    try:
        transport = httpx.ASGITransport(gateway)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            response = await client.get("/api/v1/upload/upl_1", headers={"X-API-Key": API_KEY})
    finally:
        await upstreams.aclose()
        server.close()
        await server.wait_closed()
    assert response.status_code == 502
    assert response.json()["code"] == "bad_gateway"


@MODES
async def test_client_disconnect_closes_the_upstream_response(mode: str) -> None:
    """A real gateway server: the client reads a little of a big download and leaves."""
    probe = ServiceProbe()
    service = fake_service(probe)
    async with serve(service) if mode == "http" else _nothing() as service_url:
        if mode == "http":
            upstreams = build_upstreams(ProxySettings(), urls={"media": service_url})
        else:
            upstreams = build_upstreams(ProxySettings(), {"media": service})
        gateway = gateway_app(FakeAdmit(), upstreams)
        async with serve(gateway) as gateway_url, httpx.AsyncClient() as client:
            url = f"{gateway_url}/api/v1/videos/vid_1?size={512 * MiB}"
            async with client.stream("GET", url, headers={"X-API-Key": API_KEY}) as response:
                assert response.status_code == 200
                async for _ in response.aiter_raw():
                    break
            await asyncio.wait_for(probe.stream_closed.wait(), 10)
        await upstreams.aclose()


@MODES
async def test_client_leaving_mid_upload_ends_the_upload_at_the_service(mode: str) -> None:
    """The gateway's client sends part of a body and disconnects: the service sees its
    request end early (not a complete, truncated body), the gateway logs a 499."""
    probe = ServiceProbe()
    service = fake_service(probe)
    async with serve(service) if mode == "http" else _nothing() as service_url:
        if mode == "http":
            upstreams = build_upstreams(ProxySettings(), urls={"upload": service_url})
        else:
            upstreams = build_upstreams(ProxySettings(), {"upload": service})
        gateway = gateway_app(FakeAdmit(), upstreams)
        inbox: list[Message] = [
            {"type": "http.request", "body": b"x" * 65536, "more_body": True},
            {"type": "http.disconnect"},
        ]
        sent: list[Message] = []

        async def receive() -> Message:
            if inbox:
                return inbox.pop(0)
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

        async def send(message: Message) -> None:
            sent.append(message)

        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/api/v1/upload/chunk",
            "raw_path": b"/api/v1/upload/chunk",
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"gw"),
                (b"content-length", b"1000000"),
                (b"x-api-key", API_KEY.encode()),
            ],
            "client": ("127.0.0.1", 1),
            "server": ("gw", 80),
        }
        await asyncio.wait_for(gateway(scope, receive, send), 10)
        await asyncio.wait_for(probe.upload_interrupted.wait(), 10)
        await upstreams.aclose()
    assert sent[0]["status"] == 499


async def test_router_builds_its_upstreams_at_startup_from_the_service_apps() -> None:
    probe = ServiceProbe()
    service = fake_service(probe)
    # The URLs come from the shared settings (declared once, `AVC_<SERVICE>_URL`).
    shared = settings().model_copy(
        update={"media_url": "", "stats_url": "http://stats.test:8080", "webhooks_url": ""}
    )
    app = create_service_app(service="gateway", settings=shared)
    app.include_router(create_proxy_router(admit=FakeAdmit(), settings=ProxySettings()))
    app.state.service_apps = {"upload": service}  # what all-in-one mode sets up
    async with LifespanManager(app):
        upstreams = app.state.upstreams
        assert isinstance(upstreams, Upstreams)
        assert upstreams.get("upload") is not None
        assert upstreams.get("upload").in_process  # type: ignore[union-attr]
        assert upstreams.get("media") is None
        stats = upstreams.get("stats")
        assert stats is not None
        assert not stats.in_process
        assert str(stats.base_url) == "http://stats.test:8080"
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            response = await client.get("/api/v1/upload/upl_9", headers={"X-API-Key": API_KEY})
    assert response.status_code == 200
    assert response.json()["upload_id"] == "upl_9"


async def test_router_without_upstreams_before_startup_answers_503() -> None:
    app = create_service_app(service="gateway", settings=settings())
    app.include_router(create_proxy_router(admit=FakeAdmit(), settings=ProxySettings()))
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        response = await client.get("/api/v1/upload/upl_9", headers={"X-API-Key": API_KEY})
    assert response.status_code == 503


def test_every_service_route_of_the_table_is_proxied() -> None:
    templates = set(proxied_templates())
    for route in PUBLIC_ROUTES:
        assert (route.path in templates) == (route.service != "gateway"), route


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (b"", b""),
        (b"api_key=avc_1", b""),
        (b"a=1&api_key=avc_1&b=2", b"a=1&b=2"),
        (b"api%5Fkey=x&API_KEY=y&api_key&c=%26", b"c=%26"),
        (b"api_keys=1&my_api_key=2", b"api_keys=1&my_api_key=2"),
        (b"a=1&&b=2", b"a=1&b=2"),
    ],
)
def test_without_api_key(query: bytes, expected: bytes) -> None:
    assert without_api_key(query) == expected


def test_hop_by_hop_headers_are_dropped_both_ways() -> None:
    incoming = [
        (b"host", b"gw"),
        (b"connection", b"keep-alive, X-Trace"),
        (b"x-trace", b"1"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"proxy-connection", b"keep-alive"),
        (b"content-length", b"3"),
        (b"x-keep", b"yes"),
    ]
    out = dict(
        upstream_request_headers(
            incoming, request_id="r", internal_token="t", client_host="1.2.3.4", scheme="https"
        )
    )
    assert out == {
        b"content-length": b"3",
        b"x-keep": b"yes",
        b"x-forwarded-for": b"1.2.3.4",
        b"x-forwarded-proto": b"https",
        b"x-forwarded-host": b"gw",
        b"x-request-id": b"r",
        INTERNAL_TOKEN_HEADER.lower().encode(): b"t",
    }
    back = client_response_headers(
        [
            (b"Content-Length", b"10"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Date", b"x"),
            (b"Server", b"uvicorn"),
            (b"Set-Cookie", b"a=1"),
        ]
    )
    assert back == [(b"content-length", b"10"), (b"set-cookie", b"a=1")]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], False),
        ([(b"content-length", b"0")], False),
        ([(b"content-length", b"12")], True),
        ([(b"transfer-encoding", b"chunked")], True),
    ],
)
def test_has_body(headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert has_body(headers) is expected


def test_the_error_used_for_a_client_that_left_has_its_own_code() -> None:
    from avc_gateway.proxy.forward import ClientClosedRequest

    assert issubclass(ClientClosedRequest, AppError)
    assert ClientClosedRequest().body("r") == {
        "error": "The client closed the request.",
        "code": "client_closed_request",
        "request_id": "r",
    }
