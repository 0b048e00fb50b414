"""Only `AVC_GATEWAY_TRUST_FORWARDED_FOR` decides whether `X-Forwarded-For` names the client.

A real `avcaption serve --target gateway` process on 127.0.0.1 (the address uvicorn trusted by
default for proxy headers, so a spoofed header used to reset every per-IP budget): with the
setting off, changing `X-Forwarded-For` on each request must not escape the login brute-force
limit nor the per-IP public budget; with it on, the last hop is the client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from .harness import Component, Stack, running_stack

pytestmark = pytest.mark.slow

LOGIN_LIMIT = 3
PUBLIC_LIMIT = 4
CHEAP_ARGON2 = {
    "AVC_GATEWAY_PASSWORD_HASH_TIME_COST": "1",
    "AVC_GATEWAY_PASSWORD_HASH_MEMORY_KIB": "64",
    "AVC_GATEWAY_PASSWORD_HASH_PARALLELISM": "1",
}


@pytest.fixture(scope="module", params=["false", "true"])
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Component, bool]]:
    trust: str = request.param
    env = {
        "AVC_GATEWAY_TRUST_FORWARDED_FOR": trust,
        "AVC_GATEWAY_LOGIN_RATE_LIMIT_PER_MINUTE": str(LOGIN_LIMIT),
        "AVC_GATEWAY_PUBLIC_RATE_LIMIT_PER_MINUTE": str(PUBLIC_LIMIT),
        **CHEAP_ARGON2,
    }
    root = tmp_path_factory.mktemp(f"xff-{trust}")
    stack: Stack
    with running_stack(root, bus_url="memory://", extra_env=env) as stack:
        component = stack.spawn("gateway")
        component.wait_ready()
        yield component, trust == "true"


def spoofed(i: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.{i + 1}"}


def test_login_limit_is_not_reset_by_a_spoofed_forwarded_for(
    gateway: tuple[Component, bool],
) -> None:
    component, trusted = gateway
    email = f"victim-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": "wrong password 123"}
    with httpx.Client(base_url=component.url, timeout=30) as client:
        statuses = [
            client.post("/api/v1/auth/login", json=body, headers=spoofed(i)).status_code
            for i in range(LOGIN_LIMIT + 2)
        ]
    if trusted:
        # Behind a trusted proxy each address is its own client: none is over its limit.
        assert statuses == [401] * (LOGIN_LIMIT + 2)
    else:
        assert statuses == [401] * LOGIN_LIMIT + [429, 429]


def test_public_budget_is_not_reset_by_a_spoofed_forwarded_for(
    gateway: tuple[Component, bool],
) -> None:
    component, trusted = gateway
    # Answered 503 (no media service here) after the public budget was spent, or 429.
    with httpx.Client(base_url=component.url, timeout=30) as client:
        responses = [
            client.get(f"/play/tok-{uuid.uuid4().hex[:6]}/x.m3u8", headers=spoofed(50 + i))
            for i in range(PUBLIC_LIMIT + 2)
        ]
    statuses = [r.status_code for r in responses]
    if trusted:
        assert 429 not in statuses, statuses
        assert all(r.headers["x-ratelimit-limit"] == str(PUBLIC_LIMIT) for r in responses)
    else:
        assert statuses[-2:] == [429, 429], statuses
        assert 429 not in statuses[:PUBLIC_LIMIT], statuses


def test_a_client_written_prefix_never_escapes_the_limit(gateway: tuple[Component, bool]) -> None:
    component, _ = gateway
    email = f"proxy-{uuid.uuid4().hex[:8]}@example.com"
    body = {"email": email, "password": "wrong password 123"}
    # The client's own part changes, the hop a proxy appended does not: one budget either way
    # (trusted, the last hop is the client; untrusted, the TCP peer is).
    with httpx.Client(base_url=component.url, timeout=30) as client:
        statuses = [
            client.post(
                "/api/v1/auth/login",
                json=body,
                headers={"X-Forwarded-For": f"10.9.9.{i}, 203.0.113.99"},
            ).status_code
            for i in range(LOGIN_LIMIT + 1)
        ]
    assert statuses == [401] * LOGIN_LIMIT + [429]
