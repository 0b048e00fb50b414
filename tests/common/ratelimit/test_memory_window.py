"""The in-process moving window: exact over any 60 s, and its memory stays bounded."""

from __future__ import annotations

import pytest

from avc_common.ratelimit import limiter as limiter_module
from avc_common.ratelimit.limiter import MemoryRateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(limiter_module, "time", fake)
    return fake


async def test_the_window_moves_hit_by_hit(clock: Clock) -> None:
    limiter = MemoryRateLimiter()
    for _ in range(3):  # t=0, 10, 20
        assert (await limiter.hit("read", "k", per_minute=3)).allowed
        clock.now += 10
    refused = await limiter.hit("read", "k", per_minute=3)  # t=30
    assert not refused.allowed
    assert refused.retry_after == 30  # the hit at t=0 leaves the window at t=60
    assert refused.reset_at == int(clock.now) + 30
    clock.now += 29.5  # t=59.5: still inside
    assert not (await limiter.hit("read", "k", per_minute=3)).allowed
    clock.now += 0.5  # t=60: the first hit is out, one slot is free
    freed = await limiter.hit("read", "k", per_minute=3)
    assert freed.allowed
    assert freed.remaining == 0
    assert not (await limiter.hit("read", "k", per_minute=3)).allowed


async def test_a_refused_hit_is_not_counted(clock: Clock) -> None:
    limiter = MemoryRateLimiter()
    assert (await limiter.hit("write", "k", per_minute=1)).allowed
    for _ in range(5):
        clock.now += 1
        assert not (await limiter.hit("write", "k", per_minute=1)).allowed
    clock.now += 55  # 60 s after the only counted hit
    assert (await limiter.hit("write", "k", per_minute=1)).allowed


async def test_costs_count_as_many_hits(clock: Clock) -> None:
    limiter = MemoryRateLimiter()
    assert (await limiter.hit("upload", "k", per_minute=10, cost=7)).remaining == 3
    assert not (await limiter.hit("upload", "k", per_minute=10, cost=4)).allowed
    assert (await limiter.hit("upload", "k", per_minute=10, cost=3)).remaining == 0
    with pytest.raises(ValueError, match="cost"):
        await limiter.hit("upload", "k", per_minute=10, cost=0)


async def test_idle_keys_are_dropped(clock: Clock) -> None:
    limiter = MemoryRateLimiter()
    for n in range(100):
        await limiter.hit("read", f"key{n}", per_minute=5)
    assert len(limiter._windows) == 100
    clock.now += 61
    await limiter.hit("read", "fresh", per_minute=5)
    assert list(limiter._windows) == [("read", "fresh")]
