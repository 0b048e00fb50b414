from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi import HTTPException as FastAPIHTTPException
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from avc_common import errors
from avc_common.errors import ERROR_BY_STATUS, AppError
from avc_common.web import error_responses

MakeApp = Callable[..., FastAPI]
ClientFor = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]

ALL_ERRORS: list[type[AppError]] = [*ERROR_BY_STATUS.values(), errors.PlanRequired]
SHAPE = {"error", "code", "request_id"}


class Item(BaseModel):
    name: str
    count: int


router = APIRouter()


@router.get("/raise/{code}")
async def raise_error(code: str) -> None:
    cls = next(c for c in ALL_ERRORS if c.code == code)
    raise cls()


@router.get("/rate-limited")
async def rate_limited() -> None:
    raise errors.RateLimited("Slow down.", headers={"Retry-After": "7"})


@router.post("/conflict")
async def conflict() -> None:
    raise errors.Conflict("3 chunks missing.", details={"missing": [1, 4, 9]})


@router.post(
    "/items",
    responses=error_responses(errors.NotFound, errors.Conflict, errors.Gone),
)
async def create_item(item: Item, limit: int = 10) -> dict[str, Any]:
    return item.model_dump()


@router.get("/crash")
async def crash() -> None:
    raise RuntimeError("db password is hunter2")


@router.get("/teapot")
async def teapot() -> None:
    raise StarletteHTTPException(418)


@router.get("/fastapi-400")
async def fastapi_400() -> None:
    raise FastAPIHTTPException(400, "There was an error parsing the body")


def assert_shape(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    assert SHAPE <= set(body) <= SHAPE | {"details"}
    assert body["code"] == code
    assert isinstance(body["error"], str)
    assert body["error"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


@pytest.mark.parametrize("cls", ALL_ERRORS, ids=lambda c: f"{c.status}-{c.code}")
async def test_app_errors_render_the_public_shape(
    make_app: MakeApp, client_for: ClientFor, cls: type[AppError]
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.get(f"/raise/{cls.code}")
    body = assert_shape(response, cls.status, cls.code)
    assert body["error"] == cls.default_message
    assert "details" not in body


def test_every_contract_status_has_an_error_class() -> None:
    contract = {400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 429, 500, 502, 503, 504}
    assert contract <= set(ERROR_BY_STATUS)


async def test_app_error_headers_and_details(make_app: MakeApp, client_for: ClientFor) -> None:
    async with client_for(make_app(routers=[router])) as client:
        limited = await client.get("/rate-limited")
        conflict = await client.post("/conflict")
    assert assert_shape(limited, 429, "rate_limited")["error"] == "Slow down."
    assert limited.headers["retry-after"] == "7"
    body = assert_shape(conflict, 409, "conflict")
    assert body["details"] == {"missing": [1, 4, 9]}


async def test_unknown_route_is_a_404_in_the_shape(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.get("/api/v1/nothing/here")
    assert_shape(response, 404, "not_found")


async def test_wrong_method_is_a_405_with_allow(make_app: MakeApp, client_for: ClientFor) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.delete("/items")
    assert_shape(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


async def test_validation_error_is_a_422_with_details(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.post(
            "/items?limit=abc", json={"name": "x", "count": "hunter2-secret"}
        )
    body = assert_shape(response, 422, "validation_error")
    problems = body["details"]["errors"]
    assert {tuple(p["loc"]) for p in problems} == {("query", "limit"), ("body", "count")}
    for problem in problems:
        assert set(problem) == {"loc", "msg", "type"}
        assert problem["type"] == "int_parsing"
    assert "hunter2" not in response.text


async def test_missing_body_field_is_a_422(make_app: MakeApp, client_for: ClientFor) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.post("/items", json={"name": "x"})
    body = assert_shape(response, 422, "validation_error")
    assert body["details"]["errors"][0]["loc"] == ["body", "count"]
    assert body["details"]["errors"][0]["type"] == "missing"


async def test_malformed_json_is_a_400(make_app: MakeApp, client_for: ClientFor) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.post(
            "/items",
            content=b'{"name": "x", "count": ',
            headers={"content-type": "application/json"},
        )
    body = assert_shape(response, 400, "bad_request")
    assert body["details"]["errors"][0]["type"] == "json_invalid"


async def test_starlette_http_exceptions_map_to_the_shape(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        teapot = await client.get("/teapot")
        parse = await client.get("/fastapi-400")
    assert_shape(teapot, 418, "i_m_a_teapot")
    assert assert_shape(parse, 400, "bad_request")["error"] == "There was an error parsing the body"


def test_framework_body_limit_is_refused(make_app: MakeApp) -> None:
    # Starlette's limiter would answer a plain-text 413: services raise PayloadTooLarge.
    with pytest.raises(TypeError, match="PayloadTooLarge"):
        make_app(max_body_size=64)


async def test_unexpected_exception_is_a_500_that_hides_the_cause(
    make_app: MakeApp, client_for: ClientFor, logs: Any
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.get("/crash", headers={"X-Request-ID": "crash-1"})
    body = assert_shape(response, 500, "internal_error")
    assert body["error"] == "Internal server error."
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text

    (line,) = logs.events("unhandled_exception")
    assert line["level"] == "error"
    assert line["request_id"] == "crash-1"
    assert line["service"] == "svc"
    assert line["exc_type"] == "RuntimeError"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "RuntimeError: db password is hunter2" in line["exception"]


class RejectingMiddleware:
    """Stands for gateway middleware (auth, rate limits) that raises AppError itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/guarded":
            raise errors.Unauthorized("Missing API key.")
        await self.app(scope, receive, send)


async def test_app_errors_raised_in_middleware_keep_their_shape(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    app = make_app(routers=[router], middleware=[Middleware(RejectingMiddleware)])
    async with client_for(app) as client:
        response = await client.get("/guarded")
    assert assert_shape(response, 401, "unauthorized")["error"] == "Missing API key."


def test_error_responses_document_each_error(make_app: MakeApp) -> None:
    schema = make_app(routers=[router]).openapi()
    responses = schema["paths"]["/items"]["post"]["responses"]
    for status, code in (("404", "not_found"), ("409", "conflict"), ("410", "gone")):
        media = responses[status]["content"]["application/json"]
        assert media["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
        assert media["examples"][code]["value"]["code"] == code
        assert code in responses[status]["description"]
    # FastAPI's own 422 model is replaced by the real shape.
    assert responses["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    components = schema["components"]["schemas"]
    assert set(components["ErrorBody"]["required"]) == SHAPE
    assert "HTTPValidationError" not in components


def test_error_responses_groups_codes_sharing_a_status() -> None:
    out = error_responses(errors.Forbidden, errors.PlanRequired)
    assert list(out) == [403]
    assert set(out[403]["content"]["application/json"]["examples"]) == {
        "forbidden",
        "plan_required",
    }
