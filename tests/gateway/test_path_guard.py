"""`PathGuard`: dot segments and encoded separators are refused before any routing, in the
error shape; ordinary paths (dots inside names, encoded spaces) pass. The end-to-end version,
through the real gateway in both run modes, is `tests/e2e/test_path_guard_e2e.py`."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Request
from starlette.middleware import Middleware

from avc_common.web import create_service_app
from avc_gateway.path_guard import PathGuard, is_ambiguous

from .test_proxy import serve, settings

AMBIGUOUS = [
    b"/play/x/../../api/v1/videos",
    b"/play/x/./y",
    b"/play/x/.",
    b"/..",
    b"/play/x/%2e%2e/metrics",
    b"/play/x/%2E%2E/metrics",
    b"/play/x/%2E./metrics",
    b"/play/x/.%2e/metrics",
    b"/play/x/%2e/metrics",
    b"/play/x/..%2fmetrics",
    b"/play/x/..%2Fmetrics",
    b"/api/v1/upload/a%2fb",
    b"/play/x/..%5cmetrics",
    b"/play/x/..%5Cmetrics",
    b"/play/x/..\\metrics",
    b"/play/x/%00",
    b"/play/x/%252e%252e/metrics",
    b"/play/x/%252f",
]
ORDINARY = [
    b"/",
    b"/api/v1/videos",
    b"/api/v1/videos/vid_1",
    b"/play/tok.en/master.m3u8",
    b"/play/tok/720p/segment_001.ts",
    b"/play/tok/a%20b.vtt",
    b"/play/tok/...",
    b"/play/tok/.hidden",
    b"/play/tok/a..b",
    b"/api/v1/upload/%41",
    b"/api/v1/videos/",
]


@pytest.mark.parametrize("raw_path", AMBIGUOUS, ids=[p.decode() for p in AMBIGUOUS])
def test_ambiguous_paths(raw_path: bytes) -> None:
    assert is_ambiguous(raw_path)


@pytest.mark.parametrize("raw_path", ORDINARY, ids=[p.decode() for p in ORDINARY])
def test_ordinary_paths(raw_path: bytes) -> None:
    assert not is_ambiguous(raw_path)


def guarded_app() -> Any:
    router = APIRouter()
    seen: list[str] = []

    @router.get("/{rest:path}")
    async def anything(request: Request, rest: str) -> Any:
        seen.append(rest)
        return {"raw_path": request.scope["raw_path"].decode()}

    app = create_service_app(
        service="gateway", settings=settings(), routers=[router], middleware=[Middleware(PathGuard)]
    )
    app.state.seen = seen
    return app


async def test_refused_in_the_error_shape_before_any_route_runs() -> None:
    app = guarded_app()
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        refused = [
            await client.get("/", headers={"X-Request-ID": f"r-{i}"}, extensions={"target": p})
            for i, p in enumerate(AMBIGUOUS)
        ]
        passed = [await client.get("/", extensions={"target": p}) for p in ORDINARY]
    for i, response in enumerate(refused):
        assert response.status_code == 400, (AMBIGUOUS[i], response.text)
        assert response.json() == {
            "error": response.json()["error"],
            "code": "bad_request",
            "request_id": f"r-{i}",
        }
        assert response.headers["x-request-id"] == f"r-{i}"
    assert [r.status_code for r in passed] == [200] * len(ORDINARY)
    assert [r.json()["raw_path"] for r in passed] == [p.decode() for p in ORDINARY]
    assert len(app.state.seen) == len(ORDINARY)
