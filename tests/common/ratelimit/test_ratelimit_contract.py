"""Contract suite for rate-limit state: the same behaviour in memory and on a real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from avc_common.ratelimit import RateLimiter, open_ratelimiter

REDIS_URL = "redis://127.0.0.1:6379/0"


async def _redis_up() -> bool:
    client = aioredis.from_url(REDIS_URL)
    try:
        return bool(await client.ping())
    except OSError:
        return False
    finally:
        await client.aclose()


@pytest.fixture(params=["memory", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    """Yields a factory: every limiter it makes shares one store (like two gateway replicas)."""
    prefix = f"avc-test:{uuid.uuid4().hex}"
    made: list[RateLimiter] = []
    if request.param == "redis" and not await _redis_up():
        pytest.skip(f"Redis: no server answers at {REDIS_URL}")
    shared_memory: RateLimiter | None = None

    def factory() -> RateLimiter:
        nonlocal shared_memory
        if request.param == "memory":
            shared_memory = shared_memory or open_ratelimiter("memory://")
            return shared_memory
        limiter = open_ratelimiter(REDIS_URL, key_prefix=prefix)
        made.append(limiter)
        return limiter

    yield factory
    if request.param == "redis":
        client = aioredis.from_url(REDIS_URL)
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    for limiter in made:
        await limiter.close()


async def test_allows_up_to_the_limit_then_refuses(make_limiter) -> None:
    limiter = make_limiter()
    decisions = [await limiter.hit("read", "key_a", per_minute=5) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
    refused = decisions[-1]
    assert refused.remaining == 0
    assert 1 <= refused.retry_after <= 60
    assert refused.reset_at >= int(time.time())


async def test_headers_carry_limit_remaining_reset_and_retry_after(make_limiter) -> None:
    limiter = make_limiter()
    ok = await limiter.hit("write", "k", per_minute=1)
    refused = await limiter.hit("write", "k", per_minute=1)
    assert ok.headers().keys() == {
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    }
    assert ok.headers()["X-RateLimit-Limit"] == "1"
    assert refused.headers()["Retry-After"].isdigit()
    assert int(refused.headers()["X-RateLimit-Reset"]) >= int(time.time())


async def test_scopes_and_keys_are_independent(make_limiter) -> None:
    limiter = make_limiter()
    assert (await limiter.hit("read", "k1", per_minute=1)).allowed
    assert (await limiter.hit("read", "k2", per_minute=1)).allowed
    assert (await limiter.hit("stats", "k1", per_minute=1)).allowed
    assert not (await limiter.hit("read", "k1", per_minute=1)).allowed


async def test_two_limiters_on_one_store_share_one_budget(make_limiter) -> None:
    first, second = make_limiter(), make_limiter()
    results = [await (first if i % 2 else second).hit("read", "k", per_minute=4) for i in range(6)]
    assert sum(r.allowed for r in results) == 4


async def test_concurrent_hits_never_exceed_the_limit(make_limiter) -> None:
    limiters = [make_limiter() for _ in range(3)]
    results = await asyncio.gather(
        *(limiters[i % 3].hit("upload", "k", per_minute=25) for i in range(60))
    )
    assert sum(r.allowed for r in results) == 25


async def test_a_raised_limit_admits_more(make_limiter) -> None:
    limiter = make_limiter()
    for _ in range(3):
        await limiter.hit("read", "k", per_minute=3)
    assert not (await limiter.hit("read", "k", per_minute=3)).allowed
    # An operator override raises the class limit: hits already counted still count.
    assert (await limiter.hit("read", "k", per_minute=10)).allowed


async def test_reset_forgets_hits(make_limiter) -> None:
    limiter = make_limiter()
    for _ in range(2):
        await limiter.hit("login", "ip|e", per_minute=2)
    assert not (await limiter.hit("login", "ip|e", per_minute=2)).allowed
    await limiter.reset("login", "ip|e", per_minute=2)
    assert (await limiter.hit("login", "ip|e", per_minute=2)).allowed


async def test_ping_succeeds_on_a_live_store(make_limiter) -> None:
    await make_limiter().ping()


async def test_invalid_limit_is_rejected(make_limiter) -> None:
    with pytest.raises(ValueError, match="per_minute"):
        await make_limiter().hit("read", "k", per_minute=0)


async def test_ping_fails_when_redis_is_unreachable() -> None:
    limiter = open_ratelimiter("redis://127.0.0.1:1/0")
    with pytest.raises(Exception):  # noqa: B017 - connection errors differ by client version
        await limiter.ping()
    await limiter.close()


def test_unknown_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="memory:// or redis://"):
        open_ratelimiter("mongodb://x")
