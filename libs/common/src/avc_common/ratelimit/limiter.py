"""A thin layer over the `limits` library: one moving window per (scope, key), per minute.

The moving window is exact ("301 requests in any 60 s → the 301st is refused"), which is what the
public contract promises; `limits` keeps it atomic in Redis with a Lua script, so replicas sharing
one Redis share one budget.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter


@dataclass(frozen=True)
class RateLimitDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds when a slot frees up again
    retry_after: int  # seconds to wait before retrying; 0 when allowed

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


class RateLimiter:
    """Counts hits per (scope, key) in a 60 s moving window."""

    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._strategy = MovingWindowRateLimiter(storage)

    async def hit(
        self, scope: str, key: str, *, per_minute: int, cost: int = 1
    ) -> RateLimitDecision:
        """Returns whether this hit fits the budget, counting it when it does."""
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        item = RateLimitItemPerMinute(per_minute)
        allowed = await self._strategy.hit(item, scope, key, cost=cost)
        stats = await self._strategy.get_window_stats(item, scope, key)
        now = time.time()
        reset_at = max(math.ceil(stats.reset_time), math.ceil(now))
        return RateLimitDecision(
            allowed=allowed,
            limit=per_minute,
            remaining=max(stats.remaining, 0),
            reset_at=reset_at,
            retry_after=0 if allowed else max(1, math.ceil(stats.reset_time - now)),
        )

    async def reset(self, scope: str, key: str, *, per_minute: int) -> None:
        """Forgets every hit of (scope, key) — e.g. after a successful login."""
        await self._strategy.clear(RateLimitItemPerMinute(per_minute), scope, key)

    async def ping(self) -> None:
        """Raises when the backing store does not answer (for /readyz)."""
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
        return RateLimiter(MemoryStorage())
    if scheme in ("redis", "rediss"):
        storage = RedisStorage(f"async+{url}", implementation="redispy", key_prefix=key_prefix)
        return RateLimiter(storage)
    raise ValueError(f"unsupported rate-limit URL scheme {scheme!r}: use memory:// or redis://")
