"""Rate limits per class (API.md "Rate limits"), and the headers that go on every limited
response — also on responses other code produces (the proxy streams them).

What is counted against what:
- read / write / upload / stats: the API key, or the account for JWT sessions
  (`Principal.rate_limit_key`), at the account's override or the configured default;
- public (`/embed`, `/play`): the client IP;
- login: the client IP and the lower-cased email together, whatever the outcome (brute force),
  and the client IP alone (guessing one password across many accounts);
- none (chunk uploads): nothing.
The state is `app.state.ratelimiter` (Redis in production), so replicas share one budget.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter
from starlette.types import Scope

from avc_common.errors import BadRequest, RateLimited
from avc_common.ratelimit import RateLimitDecision, RateLimiter
from avc_common.web.body import read_json_body
from avc_gateway.accounts.repository import Account
from avc_gateway.config import GatewaySettings
from avc_gateway.principal import Principal
from avc_gateway.public_routes import RateClass

STATE_KEY: Final = "ratelimit"
"""Where the request's decision is kept (`request.state.ratelimit`) for the headers."""
_HEADER_NAMES: Final = frozenset(
    {b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset", b"retry-after"}
)


@dataclass(frozen=True)
class Subject:
    """One budget: what is counted (scope + key) and how much it may spend per minute."""

    scope: str
    key: str
    per_minute: int


class RateLimitMetrics:
    def __init__(self, registry: CollectorRegistry, *, service: str) -> None:
        self._service = service
        self.rejections = Counter(
            "avc_ratelimit_rejections_total",
            "Requests refused with 429, by rate class.",
            ["service", "rate_class"],
            registry=registry,
        )

    def rejected(self, rate_class: str) -> None:
        self.rejections.labels(self._service, rate_class).inc()


class RateLimits:
    def __init__(
        self,
        limiter: RateLimiter,
        settings: GatewaySettings,
        *,
        metrics: RateLimitMetrics | None = None,
    ) -> None:
        self.limiter = limiter
        self.settings = settings
        self.metrics = metrics

    async def enforce(
        self,
        request: Request,
        rate_class: RateClass,
        principal: Principal | None,
        account: Account | None,
    ) -> RateLimitDecision | None:
        """Counts the request; returns the decision (None when the class is not limited) after
        recording it for the headers. Raises RateLimited over the limit."""
        subject = await self.subject(request, rate_class, principal, account)
        if subject is None:
            return None
        decision = await self.limiter.hit(subject.scope, subject.key, per_minute=subject.per_minute)
        if rate_class == "login":
            # Beside per IP + email: every attempt from the IP, whatever the email. Both are
            # counted; the client is told about the stricter one.
            ip = client_ip(request, trust_forwarded_for=self.settings.trust_forwarded_for)
            per_ip = await self.limiter.hit(
                "login_ip", ip, per_minute=self.settings.login_ip_rate_limit_per_minute
            )
            decision = _stricter(decision, per_ip)
        setattr(request.state, STATE_KEY, decision)
        if not decision.allowed:
            if self.metrics is not None:
                self.metrics.rejected(rate_class)
            raise RateLimited(
                f"Too many requests ({decision.limit} per minute for this class); "
                f"retry in {decision.retry_after} s.",
                headers=decision.headers(),
            )
        return decision

    async def subject(
        self,
        request: Request,
        rate_class: RateClass,
        principal: Principal | None,
        account: Account | None,
    ) -> Subject | None:
        """Returns the budget this request spends from (None for `none`)."""
        if rate_class == "none":
            return None
        ip = client_ip(request, trust_forwarded_for=self.settings.trust_forwarded_for)
        if rate_class == "public":
            return Subject("public", ip, self.settings.public_rate_limit_per_minute)
        if rate_class == "login":
            email = await _login_email(request)
            # Hashed: rate-limit keys (in Redis) need not hold email addresses.
            digest = hashlib.sha256(email.encode()).hexdigest()[:32]
            return Subject("login", f"{ip}|{digest}", self.settings.login_rate_limit_per_minute)
        limits = self.settings.account_rate_limits()
        per_minute = limits[rate_class]
        if principal is None:
            # Not in the route table (account classes need credentials); count per IP anyway.
            return Subject(rate_class, f"ip:{ip}", per_minute)
        if account is not None:
            per_minute = account.rate_limits.get(rate_class, per_minute)
        return Subject(rate_class, principal.rate_limit_key, per_minute)


def _stricter(a: RateLimitDecision, b: RateLimitDecision) -> RateLimitDecision:
    """Returns the decision to report of two budgets spent by one request: a refusal (the
    longer wait), else the one with fewer requests left."""
    if not a.allowed or not b.allowed:
        refused = [d for d in (a, b) if not d.allowed]
        return max(refused, key=lambda d: d.retry_after)
    return a if a.remaining <= b.remaining else b


async def _login_email(request: Request) -> str:
    """Returns the lower-cased email of a login body ("" when there is none to read)."""
    try:
        body = await read_json_body(request)
    except BadRequest:
        # The route reports the bad body; the attempt still counts (under the IP alone).
        return ""
    email = body.get("email") if isinstance(body, dict) else None
    return email.strip().lower() if isinstance(email, str) else ""


def client_ip(request: Request, *, trust_forwarded_for: bool) -> str:
    """Returns the client's address: the last X-Forwarded-For hop when the gateway sits behind
    a trusted proxy (the address that proxy saw), else the TCP peer."""
    if trust_forwarded_for:
        hops = [
            hop.strip()
            for value in request.headers.getlist("x-forwarded-for")
            for hop in value.split(",")
        ]
        hops = [hop for hop in hops if hop]
        if hops:
            return hops[-1]
    return request.client.host if request.client else "unknown"


def with_ratelimit_headers(
    scope: Scope, headers: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """Returns a response's `headers` with the `X-RateLimit-*` ones (and `Retry-After` on 429)
    of the budget the request spent from (`request.state.ratelimit`) in place of any it had;
    unchanged when the request spent from none."""
    state = scope.get("state")
    decision = state.get(STATE_KEY) if state is not None else None
    if not isinstance(decision, RateLimitDecision):
        return headers
    kept = [(name, value) for name, value in headers if name.lower() not in _HEADER_NAMES]
    return kept + [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in decision.headers().items()
    ]
