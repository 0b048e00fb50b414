"""The one gate every public request passes: authenticate, check the plan, count the rate limit.

The proxy calls `admit(request, route)` for each request it forwards; the gateway's own routes
(login, account, API keys) reach the same function through the `Admitted`/`Authenticated`
dependencies, which look their route up in `PUBLIC_ROUTES`, so that table stays the one place
saying what each path needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, Request

from avc_common.config import Settings
from avc_common.errors import MethodNotAllowed
from avc_common.logging import bind_log_context, get_logger
from avc_common.web import Lifespan, metrics_registry
from avc_gateway.accounts.service import Identity, open_identity
from avc_gateway.auth import MissingCredentials, authenticate, check_access
from avc_gateway.config import GatewaySettings
from avc_gateway.principal import Principal
from avc_gateway.public_routes import PublicRoute, match_route
from avc_gateway.ratelimits import RateLimitMetrics, RateLimits
from avc_gateway.secrets_store import resolve_secrets

log = get_logger(__name__)


class Gatekeeper:
    def __init__(self, *, identity: Identity, limits: RateLimits) -> None:
        self.identity = identity
        self.limits = limits

    async def admit(self, request: Request, route: PublicRoute) -> Principal | None:
        """Returns the caller (None on a public route called without credentials).

        Raises 401 for missing (non-public routes) or invalid credentials, 403 when the plan or
        auth method does not fit the route, 429 over the route's rate limit. The rate-limit
        decision is kept on the request for `with_ratelimit_headers`."""
        authenticated = await authenticate(request, self.identity)
        principal = authenticated.principal if authenticated else None
        if principal is not None:
            # Async on purpose: bound here, it reaches the route's (and the proxy's) log lines.
            bind_log_context(account_id=principal.account_id)
        check_access(principal, route.access)
        await self.limits.enforce(
            request, route.rate_class, principal, authenticated.account if authenticated else None
        )
        log.debug(
            "request_admitted",
            route=route.path,
            rate_class=route.rate_class,
            auth=principal.method if principal else None,
        )
        return principal


async def admit(request: Request, route: PublicRoute) -> Principal | None:
    """Returns the caller of a public `route`, after auth, plan gating and the rate limit
    (see `Gatekeeper.admit`). The entry point the proxy calls for every forwarded request."""
    gatekeeper: Gatekeeper = request.app.state.gatekeeper
    return await gatekeeper.admit(request, route)


def route_of(request: Request) -> PublicRoute:
    """Returns the PUBLIC_ROUTES entry of the gateway route handling `request`."""
    template = getattr(request.scope.get("route"), "path_format", None)
    match = match_route(request.method, template) if isinstance(template, str) else None
    if match is None:
        raise RuntimeError(f"{request.method} {template} is missing from PUBLIC_ROUTES")
    if match.route is None:
        raise MethodNotAllowed(headers={"Allow": ", ".join(match.allowed_methods)})
    return match.route


async def _admitted(request: Request) -> Principal | None:
    return await admit(request, route_of(request))


async def _authenticated(request: Request) -> Principal:
    principal = await _admitted(request)
    if principal is None:  # a route marked public in the table but needing a caller
        raise MissingCredentials()
    return principal


async def _identity(request: Request) -> Identity:
    identity: Identity = request.app.state.identity
    return identity


Admitted = Annotated[Principal | None, Depends(_admitted)]
"""The caller of a gateway route whose access may be `public` (None without credentials)."""
Authenticated = Annotated[Principal, Depends(_authenticated)]
"""The caller of a gateway route that needs one."""
CurrentIdentity = Annotated[Identity, Depends(_identity)]


def gatekeeper_lifespan(settings: Settings, gateway_settings: GatewaySettings) -> Lifespan:
    """Returns the lifespan part that builds `app.state.identity` and `app.state.gatekeeper`
    (needs `app.state.documents` and `app.state.ratelimiter`), and flushes API-key
    `last_used_at` in the background until shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        secrets = resolve_secrets(gateway_settings, settings.resolved_data_dir)
        if secrets.generated_at is not None:
            log.warning(
                "gateway_secrets_generated",
                path=str(secrets.generated_at),
                hint="production: set AVC_JWT_SECRET and AVC_API_KEY_SECRET, the same on "
                "every replica",
            )
        identity = await open_identity(
            app.state.documents, settings=gateway_settings, secrets=secrets
        )
        if not hasattr(app.state, "ratelimit_metrics"):
            app.state.ratelimit_metrics = RateLimitMetrics(
                metrics_registry(app), service=app.state.service
            )
        app.state.identity = identity
        app.state.gatekeeper = Gatekeeper(
            identity=identity,
            limits=RateLimits(
                app.state.ratelimiter, gateway_settings, metrics=app.state.ratelimit_metrics
            ),
        )
        async with identity.last_used.running():
            yield

    return lifespan
