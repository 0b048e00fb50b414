"""The routes that forward every public path a service owns (the public table decides).

One Starlette route per path template of the table, accepting any method: the table, through
`match_route`, decides between forwarding and 405, so the two can never disagree. Paths of no
template never get here and answer the app's own 404 `not_found`. The metrics label of a
forwarded request is its template (`/api/v1/videos/{video_id}`), never the raw path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from avc_common.config import Settings
from avc_common.errors import MethodNotAllowed, NotFound, ServiceUnavailable
from avc_common.internal_auth import mint_internal_token
from avc_common.web import current_request_id
from avc_gateway.principal import Principal
from avc_gateway.proxy.config import ProxySettings
from avc_gateway.proxy.forward import forward
from avc_gateway.proxy.upstreams import Upstreams, build_upstreams, service_urls
from avc_gateway.public_routes import PUBLIC_ROUTES, PublicRoute, RouteMatch, match_route

AdmitFn = Callable[[Request, PublicRoute], Awaitable[Principal | None]]
"""Authenticates and rate-limits a request for `route`: the principal, or None for a public
route called without credentials. Raises the AppError the client gets otherwise."""

UPSTREAMS_STATE = "upstreams"


def proxied_templates() -> list[str]:
    """Returns the path templates of every forwarded route, in table order, each once."""
    return list(dict.fromkeys(r.path for r in PUBLIC_ROUTES if r.service != "gateway"))


def create_proxy_router(
    *,
    admit: AdmitFn,
    settings: ProxySettings,
    upstreams: Upstreams | None = None,
) -> APIRouter:
    """Returns the router forwarding every service-owned public route.

    With `upstreams=None` the router builds them itself when the app starts (its lifespan is
    merged into the app's by `include_router`): in-process apps from `app.state.service_apps`
    (all-in-one mode), else the service URLs of the app's shared `Settings` (`app.state.settings`);
    they are published as `app.state.upstreams` and closed at shutdown. Upstreams passed in
    are the caller's to close."""
    router = APIRouter(lifespan=None if upstreams is not None else _lifespan(settings))
    by_template: dict[str, Route] = {}

    async def proxy(request: Request) -> Response:
        path = _route_path(request.scope)
        match = match_route(request.method, path)
        # The metrics label: the template of the table entry (FastAPI leaves `scope["route"]`
        # unset for plain routes, and the first template matching a path may not be the one
        # whose method matches: `/api/v1/upload/init` vs `/api/v1/upload/{upload_id}`).
        template = _template_of(match, path)
        if template in by_template:
            request.scope["route"] = by_template[template]
        if match is None:
            raise NotFound()
        if match.route is None:
            raise MethodNotAllowed(headers={"Allow": ", ".join(match.allowed_methods)})
        route = match.route
        if route.service == "gateway":
            raise NotFound()  # the gateway's own route would have matched first

        principal = await admit(request, route)
        available = (
            upstreams
            if upstreams is not None
            else getattr(request.app.state, UPSTREAMS_STATE, None)
        )
        upstream = available.get(route.service) if available is not None else None
        if upstream is None:
            raise ServiceUnavailable(f"The {route.service} service is not configured.")
        request_id = current_request_id()
        token = None
        if principal is not None:
            secret = request.app.state.settings.internal_secret_value
            token = mint_internal_token(principal.caller(request_id), secret=secret)
        return await forward(
            request, upstream=upstream, internal_token=token, request_id=request_id
        )

    endpoint = _AnyMethod(proxy)
    for template in proxied_templates():
        route = Route(
            template, endpoint, methods=None, name=f"proxy {template}", include_in_schema=False
        )
        router.routes.append(route)
        by_template[template] = route
    return router


class _AnyMethod:
    """An ASGI endpoint: Starlette gives a plain function route only GET/HEAD, this one every
    method, so the table alone decides about 405."""

    def __init__(self, handle: Callable[[Request], Awaitable[Response]]) -> None:
        self._handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self._handle(Request(scope, receive, send))
        await response(scope, receive, send)


def _template_of(match: RouteMatch | None, path: str) -> str | None:
    if match is None:
        return None
    if match.route is not None:
        return match.route.path
    return next((r.path for r in PUBLIC_ROUTES if r.pattern.match(path)), None)


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _lifespan(
    settings: ProxySettings,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service_apps = getattr(app.state, "service_apps", None)
        shared: Settings = app.state.settings
        built = build_upstreams(settings, service_apps, urls=service_urls(shared))
        setattr(app.state, UPSTREAMS_STATE, built)
        try:
            yield
        finally:
            await built.aclose()

    return lifespan
