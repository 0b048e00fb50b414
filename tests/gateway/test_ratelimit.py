"""Rate limits: classes, keys, overrides, headers on every limited response, shared replicas."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
from fastapi import Request
from starlette.types import Message, Receive, Scope, Send
from tests.gateway.conftest import Gateway, StartGateway, fast_settings
from tests.support.assertions import assert_error

from avc_common.ratelimit import RateLimitDecision
from avc_common.runtime import Adapters
from avc_common.web.middleware import ServiceMiddleware
from avc_gateway.gatekeeper import admit
from avc_gateway.public_routes import match_route
from avc_gateway.ratelimits import with_ratelimit_headers

ACCOUNT = "/api/v1/account"
RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


async def test_the_301st_read_in_a_minute_is_429(gateway: Gateway) -> None:
    account = await gateway.account()
    headers = {"X-API-Key": await gateway.api_key(account)}
    for n in range(300):
        response = await gateway.client.get(ACCOUNT, headers=headers)
        assert response.status_code == 200, (n, response.text)
        assert response.headers["x-ratelimit-limit"] == "300"
        assert response.headers["x-ratelimit-remaining"] == str(299 - n)

    refused = await gateway.client.get(ACCOUNT, headers=headers)
    assert_error(refused, 429, "rate_limited")
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit"] == "300"
    assert refused.headers["x-ratelimit-remaining"] == "0"
    reset = int(refused.headers["x-ratelimit-reset"])
    assert time.time() <= reset <= time.time() + 61
    # Another class has its own budget.
    listed = await gateway.client.delete("/api/v1/api-keys/key_" + "0" * 25, headers=headers)
    assert_error(listed, 404, "not_found")
    assert listed.headers["x-ratelimit-limit"] == "60"

    metrics = (await gateway.client.get("/metrics")).text
    assert 'avc_ratelimit_rejections_total{rate_class="read",service="gateway"} 1.0' in metrics


async def test_each_api_key_has_its_own_budget(gateway: Gateway) -> None:
    account = await gateway.account()
    await gateway.identity.set_rate_limit(email=account.email, rate_class="read", per_minute=2)
    one = {"X-API-Key": await gateway.api_key(account)}
    two = {"X-API-Key": await gateway.api_key(account)}
    codes = [(await gateway.client.get(ACCOUNT, headers=one)).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert (await gateway.client.get(ACCOUNT, headers=two)).status_code == 200


async def test_jwt_sessions_count_per_account(gateway: Gateway) -> None:
    account = await gateway.account(plan="starter")
    await gateway.identity.set_rate_limit(email=account.email, rate_class="read", per_minute=3)
    codes = []
    for _ in range(4):
        # A fresh token each time: the budget belongs to the account, not to the token.
        response = await gateway.client.get(ACCOUNT, headers=gateway.bearer(account))
        codes.append(response.status_code)
    assert codes == [200, 200, 200, 429]


async def test_error_responses_after_admission_carry_the_headers(gateway: Gateway) -> None:
    account = await gateway.account()
    response = await gateway.client.delete("/api/v1/api-keys/nope", headers=gateway.bearer(account))
    assert_error(response, 404, "not_found")
    for name in RATE_HEADERS:
        assert name in response.headers
    assert "retry-after" not in response.headers


async def test_headers_reach_streamed_responses_made_by_other_code(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    # The probe admits like the proxy does, then streams its own response.
    response = await gateway.client.get("/probe/api/v1/stats", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "60"  # stats class
    assert response.headers["x-ratelimit-remaining"] == "59"


async def test_chunk_uploads_are_never_limited(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(gw=fast_settings(upload_rate_limit_per_minute=1))
    account = await gateway.account()
    headers = {"X-API-Key": await gateway.api_key(account)}
    for _ in range(5):
        response = await gateway.client.post("/probe/api/v1/upload/chunk", headers=headers)
        assert response.status_code == 200
        assert not any(name in response.headers for name in RATE_HEADERS)
    # ... while the other upload endpoints are.
    first = await gateway.client.post("/probe/api/v1/upload/init", headers=headers)
    second = await gateway.client.post("/probe/api/v1/upload/init", headers=headers)
    assert [first.status_code, second.status_code] == [200, 429]


async def test_public_routes_are_limited_per_client_ip(start_gateway: StartGateway) -> None:
    gateway = await start_gateway(gw=fast_settings(public_rate_limit_per_minute=2))
    account = await gateway.account()
    key = await gateway.api_key(account)
    codes = [
        (await gateway.client.get("/probe/api/v1/embed/t")).status_code,
        (await gateway.client.get("/probe/play/p/master.m3u8")).status_code,
        # Credentials do not buy a separate budget on public routes.
        (await gateway.client.get("/probe/api/v1/embed/t", headers={"X-API-Key": key})).status_code,
    ]
    assert codes == [200, 200, 429]
    transport = httpx.ASGITransport(app=gateway.app, client=("198.51.100.20", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as other_ip:
        response = await other_ip.get("/probe/api/v1/embed/t")
    assert response.status_code == 200
    assert response.headers["x-ratelimit-limit"] == "2"


async def test_two_replicas_on_one_redis_share_one_budget(
    start_gateway: StartGateway, redis_adapters: Callable[[], Adapters]
) -> None:
    first = await start_gateway(adapters=redis_adapters())
    second = await start_gateway(adapters=redis_adapters())
    account = await first.account()
    await first.identity.set_rate_limit(email=account.email, rate_class="read", per_minute=4)
    headers = {"X-API-Key": await first.api_key(account)}

    responses = []
    for n in range(5):
        replica = first if n % 2 == 0 else second
        responses.append(await replica.client.get(ACCOUNT, headers=headers))

    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in responses] == ["3", "2", "1", "0", "0"]
    assert_error(responses[-1], 429, "rate_limited")
    assert int(responses[-1].headers["retry-after"]) >= 1


async def test_login_limit_is_shared_by_replicas_on_redis(
    start_gateway: StartGateway, redis_adapters: Callable[[], Adapters]
) -> None:
    gw = fast_settings(login_rate_limit_per_minute=2)
    first = await start_gateway(adapters=redis_adapters(), gw=gw)
    second = await start_gateway(adapters=redis_adapters(), gw=gw)
    body = {"email": "victim@example.com", "password": "guess guess"}
    codes = [
        (await first.client.post("/api/v1/auth/login", json=body)).status_code,
        (await second.client.post("/api/v1/auth/login", json=body)).status_code,
        (await first.client.post("/api/v1/auth/login", json=body)).status_code,
    ]
    assert codes == [401, 401, 429]


async def test_middleware_replaces_headers_instead_of_duplicating_them() -> None:
    decision = RateLimitDecision(allowed=False, limit=5, remaining=0, reset_at=123, retry_after=7)

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        scope["state"]["ratelimit"] = decision
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [(b"x-ratelimit-limit", b"999"), (b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": b"slow down"})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    middleware = ServiceMiddleware(inner, service=None, response_headers=with_ratelimit_headers)
    await middleware({"type": "http", "headers": []}, receive, send)
    headers = [h for h in sent[0]["headers"] if h[0] != b"x-request-id"]
    assert headers == [
        (b"content-type", b"text/plain"),
        (b"x-ratelimit-limit", b"5"),
        (b"x-ratelimit-remaining", b"0"),
        (b"x-ratelimit-reset", b"123"),
        (b"retry-after", b"7"),
    ]
    assert sent[1]["body"] == b"slow down"


async def test_an_unexpected_error_after_admission_still_carries_the_headers(
    gateway: Gateway,
) -> None:
    route = match_route("GET", "/api/v1/videos")
    assert route is not None
    assert route.route is not None
    videos = route.route

    async def crash(request: Request) -> None:
        await admit(request, videos)
        raise RuntimeError("boom")

    gateway.app.add_api_route("/crash", crash)
    account = await gateway.account()
    response = await gateway.client.get("/crash", headers=gateway.bearer(account))
    assert_error(response, 500, "internal_error")
    assert response.headers["x-ratelimit-limit"] == "300"
    assert response.headers["x-ratelimit-remaining"] == "299"
