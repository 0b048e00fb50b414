"""Rate-limit state: one moving window per (scope, key), per minute.

The moving window is exact ("301 requests in any 60 s → the 301st is refused"), which is what the
public contract promises. Shared state (`redis://`) goes through the `limits` library, which keeps
the window atomic in Redis with a Lua script, so replicas sharing one Redis share one budget.

In-process state (`memory://`) is a deque of hits per key (`MemoryRateLimiter`), not `limits`'
memory storage: that one inserts every hit at the front of a list and, on every hit, schedules a
task that hands each key's list to a worker thread to find expired entries — a thread hop per
request, measured as a third of the gateway's own cost per request.
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

WINDOW_SECONDS: Final = 60.0


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds when a slot frees up again
    retry_after: int  # seconds to wait before retrying; 0 when allowed

    @classmethod
    def of(cls, *, allowed: bool, limit: int, used: int, frees_at: float) -> RateLimitDecision:
        """Returns the decision for a window holding `used` hits whose oldest expires at
        `frees_at` (unix seconds)."""
        now = time.time()
        return cls(
            allowed=allowed,
            limit=limit,
            remaining=max(limit - used, 0),
            reset_at=max(math.ceil(frees_at), math.ceil(now)),
            retry_after=0 if allowed else max(1, math.ceil(frees_at - now)),
        )

    def headers(self) -> dict[str, str]:
        """Returns the `X-RateLimit-*` headers (plus `Retry-After` when refused)."""
        out = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if not self.allowed:
            out["Retry-After"] = str(self.retry_after)
        return out


class RateLimiter(ABC):
    """Counts hits per (scope, key) in a 60 s moving window."""

    async def hit(
        self, scope: str, key: str, *, per_minute: int, cost: int = 1
    ) -> RateLimitDecision:
        """Returns whether this hit fits the budget, counting it when it does."""
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        if cost < 1:
            raise ValueError("cost must be at least 1")
        return await self._hit(scope, key, per_minute, cost)

    @abstractmethod
    async def _hit(self, scope: str, key: str, per_minute: int, cost: int) -> RateLimitDecision:
        """`hit` with checked arguments."""

    @abstractmethod
    async def reset(self, scope: str, key: str, *, per_minute: int) -> None:
        """Forgets every hit of (scope, key) — e.g. after a successful login."""

    async def ping(self) -> None:  # noqa: B027 - in-process state always answers
        """Raises when the backing store does not answer (for /readyz)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Releases connections."""


class _Window:
    """The hits of one (scope, key) within the last minute, oldest first."""

    __slots__ = ("hits", "used")

    def __init__(self) -> None:
        self.hits: deque[tuple[float, int]] = deque()  # (time, cost)
        self.used = 0

    def expire(self, now: float) -> None:
        cutoff = now - WINDOW_SECONDS
        hits = self.hits
        while hits and hits[0][0] <= cutoff:
            self.used -= hits.popleft()[1]


class MemoryRateLimiter(RateLimiter):
    """Moving windows in this process: O(1) per hit, no locks (nothing awaits inside a hit)."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], _Window] = {}
        self._next_sweep = time.monotonic() + WINDOW_SECONDS

    async def _hit(self, scope: str, key: str, per_minute: int, cost: int) -> RateLimitDecision:
        now = time.time()
        self._sweep()
        window = self._windows.get((scope, key))
        if window is None:
            window = self._windows[scope, key] = _Window()
        window.expire(now)
        allowed = window.used + cost <= per_minute
        if allowed:
            window.hits.append((now, cost))
            window.used += cost
        frees_at = (window.hits[0][0] if window.hits else now) + WINDOW_SECONDS
        return RateLimitDecision.of(
            allowed=allowed, limit=per_minute, used=window.used, frees_at=frees_at
        )

    def _sweep(self) -> None:
        """Drops the windows of keys idle for a minute, once a minute (bounds memory)."""
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + WINDOW_SECONDS
        now = time.time()
        for name, window in list(self._windows.items()):
            window.expire(now)
            if not window.hits:
                del self._windows[name]

    async def reset(self, scope: str, key: str, *, per_minute: int) -> None:
        self._windows.pop((scope, key), None)


class LimitsRateLimiter(RateLimiter):
    """A moving window in a `limits` storage (Redis: shared by every replica)."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)

    async def _hit(self, scope: str, key: str, per_minute: int, cost: int) -> RateLimitDecision:
        item = RateLimitItemPerMinute(per_minute)
        allowed = await self._strategy.hit(item, scope, key, cost=cost)
        stats = await self._strategy.get_window_stats(item, scope, key)
        return RateLimitDecision.of(
            allowed=allowed,
            limit=per_minute,
            used=per_minute - stats.remaining,
            frees_at=stats.reset_time,
        )

    async def reset(self, scope: str, key: str, *, per_minute: int) -> None:
        await self._strategy.clear(RateLimitItemPerMinute(per_minute), scope, key)

    async def ping(self) -> None:
        if not await self._storage.check():
            raise ConnectionError("rate-limit storage is not reachable")

    async def close(self) -> None:
        """Releases the Redis connection pool (`limits` has no public close for it)."""
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        aclose = getattr(client, "aclose", None)
        if aclose is not None:
            await aclose()


def open_ratelimiter(url: str, *, key_prefix: str = "avc:rl") -> RateLimiter:
    """Returns a limiter for `memory://` or `redis://[:password@]host:port[/db]` (or rediss)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryRateLimiter()
    if scheme in ("redis", "rediss"):
        storage = RedisStorage(f"async+{url}", implementation="redispy", key_prefix=key_prefix)
        return LimitsRateLimiter(storage)
    raise ValueError(f"unsupported rate-limit URL scheme {scheme!r}: use memory:// or redis://")
