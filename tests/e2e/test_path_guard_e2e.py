"""Paths with dot segments or encoded separators are refused by the gateway before routing,
in all-in-one mode and with every service its own process: 400 in the error shape, with the
request id, whatever the credentials. Sent with httpx's `target` extension: the request line
carries the path exactly as written here (no client-side normalisation).

Before the fix, `/play/x/../../api/v1/videos` answered the caller's video list on the public
per-IP budget, and `/play/x/../../metrics` the media service's own metrics, unauthenticated.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from .harness import Stack, running_stack

pytestmark = pytest.mark.slow

# Each a way to write `..`, `.` or a separator inside a segment; all must be refused.
REFUSED = [
    "/play/x/../../api/v1/videos",
    "/play/x/../../metrics",
    "/play/x/./../../openapi.json",
    "/play/x/%2e%2e/%2e%2e/api/v1/videos",
    "/play/x/%2E%2E/%2E%2E/docs",
    "/play/x/%2E./.%2e/metrics",
    "/play/x/%2e/y.m3u8",
    "/play/x/..%2f..%2fapi%2fv1%2fvideos",
    "/play/x/..%2F..%2Fmetrics",
    "/play/x/..%5c..%5cmetrics",
    "/play/x/..\\..\\metrics",
    "/play/x/%252e%252e/%252e%252e/metrics",
    "/api/v1/videos/..",
    "/api/v1/videos/vid_1/%2e%2e",
    "/api/v1/upload/a%2fb",
    "/api/v1/upload/a%00b",
    "/metrics/..",
]


@pytest.fixture(scope="module")
def all_in_one(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("guard"), bus_url="memory://") as stack:
        stack.start_all_in_one()
        yield stack


@pytest.fixture(params=["all-in-one", "separate-processes"])
def stack(request: pytest.FixtureRequest) -> Stack:
    name = "all_in_one" if request.param == "all-in-one" else "services"
    result: Stack = request.getfixturevalue(name)
    return result


@pytest.fixture
def key(stack: Stack) -> str:
    cached: str | None = getattr(stack, "_guard_key", None)
    if cached is None:
        cached = stack.api_key()
        stack._guard_key = cached  # type: ignore[attr-defined]
    return cached


def get_raw(stack: Stack, target: str, headers: dict[str, str]) -> httpx.Response:
    """GET with this exact request target (httpx would drop `..` segments from a URL)."""
    request = httpx.Request(
        "GET", stack.gateway.url + "/", headers=headers, extensions={"target": target.encode()}
    )
    with httpx.Client(timeout=10) as client:
        return client.send(request)


@pytest.mark.parametrize("target", REFUSED)
def test_ambiguous_paths_are_refused_before_routing(stack: Stack, key: str, target: str) -> None:
    rid = f"guard-{uuid.uuid4().hex[:12]}"
    for headers in ({"X-Request-ID": rid}, {"X-Request-ID": rid, "X-API-Key": key}):
        response = get_raw(stack, target, headers)
        assert response.status_code == 400, (target, response.status_code, response.text[:300])
        assert response.headers["x-request-id"] == rid
        body = response.json()
        assert set(body) == {"error", "code", "request_id"}, body
        assert body["code"] == "bad_request"
        assert body["request_id"] == rid
        # Refused before the rate limiter: no budget was spent.
        assert "x-ratelimit-limit" not in response.headers


def test_ordinary_paths_with_dots_still_reach_the_services(stack: Stack, key: str) -> None:
    listed = get_raw(stack, "/api/v1/videos", {"X-API-Key": key})
    assert listed.status_code == 200, listed.text
    # A playlist name has dots; the token is invalid, so the media service says so (not 400).
    play = get_raw(stack, "/play/not-a-token/master.m3u8", {})
    assert play.status_code in (401, 403, 404), play.text
    assert play.json()["code"] != "bad_request"
