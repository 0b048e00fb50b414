"""The proxy forwards the very path it matched, byte for byte, through both transports.

The gateway matched `/play/x/../../api/v1/videos` against `/play/{token}/{file_path:path}`;
had the transport normalised the dot segments on the way (httpx does when it builds a URL), the
service would have answered `/api/v1/videos` instead. The gateway refuses such paths before
routing anyway (`path_guard`, tested in `test_path_guard`); here the proxy alone, without that
guard, must still never send a path other than the one it checked.

The gateway runs under uvicorn and is called with httpx's `target` extension, so that neither
the client nor the test transport normalises the path first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request

from avc_common.web import create_service_app
from avc_gateway.proxy import ProxySettings, build_upstreams

from .test_proxy import FakeAdmit, gateway_app, serve, settings

MODES = pytest.mark.parametrize("mode", ["in-process", "http"])

# Raw request targets a hostile client may send; each must reach the service unchanged.
TARGETS = [
    b"/play/x/../../api/v1/videos",
    b"/play/x/./y/../../../metrics",
    b"/play/x/%2e%2e/%2e%2e/api/v1/videos",
    b"/play/x/%2E./%2e%2E/openapi.json",
    b"/play/x/..%2f..%2fapi%2fv1%2fvideos",
    b"/play/x/..%5c..%5cdocs",
    b"/play/x/a%20b/c.m3u8",
]


def echo_service() -> FastAPI:
    """Answers every path with what it received."""
    router = APIRouter()

    @router.api_route("/{rest:path}", methods=["GET", "HEAD"])
    async def echo(request: Request, rest: str) -> Any:
        return {"raw_path": request.scope["raw_path"].decode("latin-1"), "path": "/" + rest}

    return create_service_app(service="media", settings=settings(), routers=[router])


@asynccontextmanager
async def gateway_without_guard(mode: str) -> AsyncIterator[httpx.AsyncClient]:
    """The proxy router alone (no path guard) in front of the echo service, served by uvicorn."""
    service = echo_service()
    if mode == "http":
        async with serve(service) as url:
            upstreams = build_upstreams(ProxySettings(), urls={"media": url})
            async with _served(upstreams) as client:
                yield client
    else:
        upstreams = build_upstreams(ProxySettings(), {"media": service})
        # The in-process service's lifespan is the caller's (all-in-one mode runs it).
        async with service.router.lifespan_context(service), _served(upstreams) as client:
            yield client


@asynccontextmanager
async def _served(upstreams: Any) -> AsyncIterator[httpx.AsyncClient]:
    try:
        async with (
            serve(gateway_app(FakeAdmit(), upstreams)) as url,
            httpx.AsyncClient(base_url=url, timeout=10) as client,
        ):
            yield client
    finally:
        await upstreams.aclose()


@MODES
@pytest.mark.parametrize("target", TARGETS, ids=[t.decode() for t in TARGETS])
async def test_the_service_gets_the_path_the_gateway_matched(mode: str, target: bytes) -> None:
    async with gateway_without_guard(mode) as client:
        response = await client.get("/", extensions={"target": target})
    assert response.status_code == 200, response.text
    assert response.json()["raw_path"] == target.decode()
