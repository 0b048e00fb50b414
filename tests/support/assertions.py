"""The one set of assertion and waiting helpers every test suite uses."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from avc_common.ids import new_id
from avc_common.internal_auth import INTERNAL_TOKEN_HEADER, Caller, mint_internal_token

ERROR_KEYS = frozenset({"error", "code", "request_id"})
OPTIONAL_ERROR_KEYS = frozenset({"details"})


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Asserts the exact public error shape (`details` is the one optional extra) and that the
    body's request id is the response's `X-Request-ID`; returns the body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | OPTIONAL_ERROR_KEYS, body
    assert body["code"] == code, body
    assert isinstance(body["error"], str)
    assert body["error"]
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float = 10.0, interval: float = 0.02
) -> None:
    """Waits until `check()` (sync or async) is true; fails the test after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(interval)


def internal_headers(
    account_id: str,
    *,
    secret: str,
    plan: str = "enterprise",
    request_id: str | None = None,
    **extra: str,
) -> dict[str, str]:
    """Returns what the gateway adds to a forwarded call: a minted internal token and the
    request id (`extra` headers are merged in)."""
    request_id = request_id or new_id("req")
    caller = Caller(account_id=account_id, plan=plan, request_id=request_id)
    headers = {
        INTERNAL_TOKEN_HEADER: mint_internal_token(caller, secret=secret),
        "X-Request-ID": request_id,
    }
    headers.update(extra)
    return headers
