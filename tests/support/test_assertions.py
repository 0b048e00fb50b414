"""The shared helpers fail when they should (a helper that cannot fail proves nothing)."""

from __future__ import annotations

import httpx
import pytest
from tests.support.assertions import assert_error, eventually, internal_headers

from avc_common.internal_auth import INTERNAL_TOKEN_HEADER, verify_internal_token

SECRET = "s" * 48


def _response(status: int, body: object, request_id: str = "req_1") -> httpx.Response:
    return httpx.Response(status, json=body, headers={"X-Request-ID": request_id})


def test_assert_error_accepts_the_public_shape() -> None:
    body = {"error": "Video not found", "code": "not_found", "request_id": "req_1"}
    assert assert_error(_response(404, body), 404, "not_found") == body


@pytest.mark.parametrize(
    ("status", "body", "request_id"),
    [
        (500, {"error": "x", "code": "not_found", "request_id": "req_1"}, "req_1"),
        (404, {"error": "x", "code": "other", "request_id": "req_1"}, "req_1"),
        (404, {"error": "", "code": "not_found", "request_id": "req_1"}, "req_1"),
        (404, {"error": "x", "code": "not_found", "request_id": "req_2"}, "req_1"),
        (404, {"error": "x", "code": "not_found"}, "req_1"),
        (404, {"error": "x", "code": "not_found", "request_id": "req_1", "trace": "…"}, "req_1"),
    ],
)
def test_assert_error_refuses_anything_else(status: int, body: object, request_id: str) -> None:
    with pytest.raises(AssertionError):
        assert_error(_response(status, body, request_id), 404, "not_found")


async def test_eventually_takes_sync_and_async_checks() -> None:
    calls = 0

    def sync_check() -> bool:
        nonlocal calls
        calls += 1
        return calls >= 3

    async def async_check() -> bool:
        return True

    await eventually(sync_check, interval=0.001)
    await eventually(async_check)
    assert calls == 3


async def test_eventually_fails_in_time() -> None:
    with pytest.raises(AssertionError, match=r"within 0\.05 s"):
        await eventually(lambda: False, within=0.05, interval=0.01)


def test_internal_headers_carry_a_token_the_services_accept() -> None:
    headers = internal_headers("acct_1", secret=SECRET, plan="starter", request_id="req_9")
    caller = verify_internal_token(headers[INTERNAL_TOKEN_HEADER], secret=SECRET)
    assert (caller.account_id, caller.plan, caller.request_id) == ("acct_1", "starter", "req_9")
    assert headers["X-Request-ID"] == "req_9"
