"""The gateway's ASGI app: the public API (auth, rate limits, request ids, routing)."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI
from starlette.middleware import Middleware

from avc_common.config import Settings
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import create_service_app, package_version
from avc_gateway.accounts.routes import router as accounts_router
from avc_gateway.config import GatewaySettings
from avc_gateway.dashboard import install_dashboard
from avc_gateway.forwarded import TrustedForwardedProto
from avc_gateway.gatekeeper import admit, gatekeeper_lifespan
from avc_gateway.openapi import install_public_openapi
from avc_gateway.path_guard import PathGuard
from avc_gateway.proxy import ProxySettings, create_proxy_router
from avc_gateway.ratelimits import with_ratelimit_headers

SERVICE: Final = "gateway"


def create_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    gateway_settings: GatewaySettings | None = None,
    proxy_settings: ProxySettings | None = None,
) -> FastAPI:
    """Returns the gateway app; settings not given are read from the environment, here only
    (`AVC_*` shared, `AVC_GATEWAY_*` the gateway's own)."""
    settings = settings if settings is not None else Settings()
    gateway_settings = gateway_settings if gateway_settings is not None else GatewaySettings()
    proxy_settings = proxy_settings if proxy_settings is not None else ProxySettings()
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        routers=[accounts_router],
        lifespan=adapters_lifespan(
            service=SERVICE,
            settings=settings,
            adapters=adapters,
            needs=("documents", "ratelimiter"),
            then=gatekeeper_lifespan(settings, gateway_settings),
        ),
        version=package_version("avc-gateway"),
        # On every response, whoever made it: 500s and whatever the proxy streams back too.
        response_headers=with_ratelimit_headers,
        # Before any routing: the route table must see the path every later hop will see.
        middleware=[
            Middleware(PathGuard),
            *([Middleware(TrustedForwardedProto)] if gateway_settings.trust_forwarded_for else []),
        ],
    )
    app.state.gateway_settings = gateway_settings
    # The web dashboard at / and /dashboard/… (paths the public route table does not hold).
    install_dashboard(app)
    # After the gateway's own routes: every other public path is forwarded to its service.
    app.include_router(create_proxy_router(admit=admit, settings=proxy_settings))
    install_public_openapi(app, settings=proxy_settings)
    return app
