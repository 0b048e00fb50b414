"""Rate-limit state: in-process (`memory://`) or shared by every gateway replica (`redis://`)."""

from avc_common.ratelimit.limiter import RateLimitDecision, RateLimiter, open_ratelimiter

__all__ = ["RateLimitDecision", "RateLimiter", "open_ratelimiter"]
