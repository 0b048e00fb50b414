from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from fastapi import APIRouter, FastAPI

from avc_common.errors import NotFound
from avc_common.web import current_request_id
from avc_common.web.request_id import valid_request_id

MakeApp = Callable[..., FastAPI]
ClientFor = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]

GENERATED = re.compile(r"^req_[0-9a-z]{25}$")

router = APIRouter()


@router.get("/echo")
async def echo() -> dict[str, str | None]:
    return {"request_id": current_request_id()}


@router.get("/missing")
async def missing() -> None:
    raise NotFound()


@router.get("/crash")
async def crash() -> None:
    raise RuntimeError("boom")


async def test_generates_an_id_when_the_client_sends_none(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        first = await client.get("/echo")
        second = await client.get("/echo")
    assert GENERATED.match(first.headers["x-request-id"])
    assert first.json()["request_id"] == first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("client_id", ["abc", "A.b_c-9", "x" * 128, "req_123"])
async def test_keeps_a_valid_client_id(
    make_app: MakeApp, client_for: ClientFor, client_id: str
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.get("/echo", headers={"X-Request-ID": client_id})
    assert response.headers["x-request-id"] == client_id
    assert response.json()["request_id"] == client_id


@pytest.mark.parametrize(
    "client_id", ["", "x" * 129, "has space", "semi;colon", "new\tline", "ünïcode", "a/b"]
)
async def test_replaces_an_invalid_client_id(
    make_app: MakeApp, client_for: ClientFor, client_id: str
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.get("/echo", headers=[(b"x-request-id", client_id.encode())])
    assert GENERATED.match(response.headers["x-request-id"])
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/missing", 404),
        ("GET", "/no/such/route", 404),
        ("POST", "/echo", 405),
        ("GET", "/crash", 500),
        ("GET", "/healthz", 200),
        ("GET", "/metrics", 200),
    ],
)
async def test_every_response_carries_the_id(
    make_app: MakeApp, client_for: ClientFor, method: str, path: str, status: int
) -> None:
    async with client_for(make_app(routers=[router])) as client:
        response = await client.request(method, path, headers={"X-Request-ID": "trace-1"})
    assert response.status_code == status
    assert response.headers.get_list("x-request-id") == ["trace-1"]
    if status >= 400:
        assert response.json()["request_id"] == "trace-1"


async def test_an_inner_x_request_id_header_is_replaced_not_duplicated(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    from fastapi.responses import JSONResponse

    inner = APIRouter()

    @inner.get("/proxied")
    async def proxied() -> JSONResponse:
        return JSONResponse({}, headers={"X-Request-ID": "from-upstream"})

    async with client_for(make_app(routers=[inner])) as client:
        response = await client.get("/proxied", headers={"X-Request-ID": "mine"})
    assert response.headers.get_list("x-request-id") == ["mine"]


async def test_no_request_id_outside_a_request(make_app: MakeApp, client_for: ClientFor) -> None:
    async with client_for(make_app(routers=[router])) as client:
        await client.get("/echo")
        assert current_request_id() is None


def test_valid_request_id() -> None:
    assert valid_request_id("ok-1.2_3") == "ok-1.2_3"
    assert valid_request_id(None) is None
    assert valid_request_id("bad id") is None
