"""`/api/v1/openapi.json`: one OpenAPI document for the whole public API, and `/docs`.

The gateway's own routes and each service's public routes (fetched from the service's
`/openapi.json` through its upstream: over HTTP, or in-process in all-in-one mode) are merged,
keeping only what the public route table lists, so `/internal/...` routes never show. Component
names that collide with a different definition are prefixed with the service name; components
no kept path uses are dropped. Every operation gets the security its access needs and the
gateway's own error answers (401, 403, 429, 502-504). A service that is down is left out (and
retried soon), never a 500.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import Iterator, Mapping
from typing import Any, Final

import httpx
from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from avc_common.logging import get_logger
from avc_common.web import ErrorBody
from avc_gateway.dashboard import SWAGGER_UI
from avc_gateway.proxy.config import ProxySettings
from avc_gateway.proxy.upstreams import Upstream, Upstreams
from avc_gateway.public_routes import PUBLIC_ROUTES, Access, PublicRoute

log = get_logger(__name__)

OPENAPI_PATH: Final = "/api/v1/openapi.json"
DOCS_PATH: Final = "/docs"
TITLE: Final = "AVCaption API"
# A document missing a service (it was down) is rebuilt this soon.
_PARTIAL_TTL_SECONDS: Final = 5.0
_MAX_SERVICE_DOC_BYTES: Final = 10 * 1024 * 1024
_HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "options", "head", "patch"})
_REF_PREFIX: Final = "#/components/"
_ERROR_SCHEMA: Final = "ErrorBody"

Document = dict[str, Any]

SECURITY_SCHEMES: Final[Mapping[str, Any]] = {
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "An API key, `avc_` and 64 hex digits.",
    },
    "ApiKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
        "description": "The same API key as a query parameter (e.g. for players).",
    },
    "BearerJWT": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A dashboard session from `POST /api/v1/auth/login`.",
    },
}
_ANY_CREDENTIALS: Final[list[dict[str, list[str]]]] = [
    {"ApiKeyHeader": []},
    {"ApiKeyQuery": []},
    {"BearerJWT": []},
]

# status -> (component name, description): the gateway's own answers on forwarded routes.
_GATEWAY_ERRORS: Final = {
    "401": ("Unauthorized", "`unauthorized`: credentials are missing or invalid."),
    "403": ("Forbidden", "`plan_required` / `forbidden`: the plan or method does not allow it."),
    "429": ("RateLimited", "`rate_limited`: over the limit; see `Retry-After`."),
    "502": ("BadGateway", "`bad_gateway`: the service answered with an invalid response."),
    "503": ("ServiceUnavailable", "`service_unavailable`: the service cannot be reached."),
    "504": ("GatewayTimeout", "`gateway_timeout`: the service did not answer in time."),
}


def _template_key(path: str) -> str:
    """`/a/{id}` and `/a/{video_id:path}` -> `/a/{}`: templates compared by shape only."""
    return re.sub(r"\{[^}]*\}", "{}", path)


_TABLE: Final[dict[tuple[str, str, str], PublicRoute]] = {
    (r.service, r.method, _template_key(r.path)): r for r in PUBLIC_ROUTES
}


def _security(access: Access) -> list[dict[str, list[str]]]:
    if access == "jwt":
        return [{"BearerJWT": []}]
    if access == "public":
        return [{}, *_ANY_CREDENTIALS]  # optional: checked when sent (private embeds)
    return list(_ANY_CREDENTIALS)


def _error_statuses(route: PublicRoute) -> list[str]:
    statuses = []
    if route.access != "public":
        statuses += ["401", "403"]
    if route.rate_class != "none":
        statuses.append("429")
    if route.service != "gateway":
        statuses += ["502", "503", "504"]
    return statuses


def _refs(node: Any) -> Iterator[str]:
    """Yields every `$ref` under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _split_ref(ref: str) -> tuple[str, str] | None:
    if not ref.startswith(_REF_PREFIX):
        return None
    section, _, name = ref[len(_REF_PREFIX) :].partition("/")
    return (section, name) if name else None


def _rewrite_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            k: renames.get(v, v)
            if k == "$ref" and isinstance(v, str)
            else _rewrite_refs(v, renames)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def _public_paths(service: str, source: Document) -> dict[str, dict[str, Any]]:
    """Returns the source's operations that the public table gives to `service`, each with
    its security and the gateway's error answers."""
    out: dict[str, dict[str, Any]] = {}
    for path, item in (source.get("paths") or {}).items():
        if not isinstance(item, dict):
            continue
        kept: dict[str, Any] = {}
        for method, operation in item.items():
            route = _TABLE.get((service, method.upper(), _template_key(path)))
            if method not in _HTTP_METHODS or route is None or not isinstance(operation, dict):
                continue
            operation = copy.deepcopy(operation)
            operation["security"] = _security(route.access)
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(route):
                responses.setdefault(status, {"$ref": f"{_REF_PREFIX}responses/{status}"})
            kept[method] = operation
        if kept:
            if isinstance(item.get("parameters"), list):
                kept["parameters"] = copy.deepcopy(item["parameters"])
            out[path] = kept
    return out


def _reachable(paths: Mapping[str, Any], components: Mapping[str, Any]) -> set[tuple[str, str]]:
    """Returns the (section, name) of every component the paths use, directly or not."""
    seen: set[tuple[str, str]] = set()
    pending = [r for r in map(_split_ref, _refs(paths)) if r is not None]
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        value = (components.get(key[0]) or {}).get(key[1])
        pending.extend(r for r in map(_split_ref, _refs(value)) if r is not None)
    return seen


class _Merger:
    def __init__(self) -> None:
        error_schema = ErrorBody.model_json_schema(ref_template=_REF_PREFIX + "schemas/{model}")
        self.components: dict[str, dict[str, Any]] = {
            "schemas": {_ERROR_SCHEMA: error_schema},
            "responses": {
                status: {
                    "description": description,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"{_REF_PREFIX}schemas/{_ERROR_SCHEMA}"}
                        }
                    },
                }
                for status, (_, description) in _GATEWAY_ERRORS.items()
            },
            "securitySchemes": dict(SECURITY_SCHEMES),
        }
        self.paths: dict[str, Any] = {}
        # Names every document shares whatever each one's copy looks like.
        self._canonical = {("schemas", _ERROR_SCHEMA)}

    def add(self, service: str, source: Document) -> None:
        paths = _public_paths(service, source)
        components: Mapping[str, Any] = source.get("components") or {}
        used = {
            (section, name)
            for section, name in _reachable(paths, components) - self._canonical
            if name in (components.get(section) or {})
        }
        renames = self._renames(service, used, components)
        for section, name in sorted(used):
            value = components[section][name]
            new = _split_ref(renames.get(f"{_REF_PREFIX}{section}/{name}", "")) or (section, name)
            self.components.setdefault(section, {})[new[1]] = _rewrite_refs(value, renames)
        for path, item in paths.items():
            target = self.paths.setdefault(path, {})
            target.update(_rewrite_refs(item, renames))

    def _renames(
        self, service: str, used: set[tuple[str, str]], components: Mapping[str, Any]
    ) -> dict[str, str]:
        """Returns old ref -> new ref for the components that clash with a different one
        already merged, and for those that refer to a renamed one (else they would point at
        the other service's definition)."""
        clash = {
            (section, name)
            for section, name in used
            if name in self.components.get(section, {})
            and self.components[section][name] != (components.get(section) or {}).get(name)
        }
        changed = True
        while changed:
            changed = False
            for section, name in used - clash:
                if name not in self.components.get(section, {}):
                    continue
                value = (components.get(section) or {}).get(name)
                if any(_split_ref(r) in clash for r in _refs(value)):
                    clash.add((section, name))
                    changed = True
        renames: dict[str, str] = {}
        for section, name in sorted(clash):
            taken = self.components.get(section, {})
            new, n = f"{service.capitalize()}{name}", 2
            while new in taken or (section, new) in used:
                new, n = f"{service.capitalize()}{name}{n}", n + 1
            renames[f"{_REF_PREFIX}{section}/{name}"] = f"{_REF_PREFIX}{section}/{new}"
        return renames

    def document(self, *, version: str, description: str) -> Document:
        return {
            "openapi": "3.1.0",
            "info": {"title": TITLE, "version": version, "description": description},
            "paths": dict(sorted(self.paths.items())),
            "components": self.components,
            "security": list(_ANY_CREDENTIALS),
        }


def merge_public_openapi(
    gateway: Document, services: Mapping[str, Document], *, version: str = "0.0.0"
) -> Document:
    """Returns the public document: the gateway's own public routes, then each service's."""
    merger = _Merger()
    merger.add("gateway", gateway)
    for service, source in services.items():
        merger.add(service, source)
    description = (
        "The AVCaption public API. Errors always have the shape "
        '`{"error", "code", "request_id"}` (`ErrorBody`); every response carries `X-Request-ID`.'
    )
    return merger.document(version=version, description=description)


async def fetch_service_openapi(upstream: Upstream, *, limit_seconds: float) -> Document | None:
    """Returns the service's own OpenAPI document, or None (logged) when it cannot be had."""
    request = httpx.Request(
        "GET",
        upstream.url(b"/openapi.json"),
        headers={"accept": "application/json"},
        extensions={"timeout": httpx.Timeout(limit_seconds).as_dict()},
    )
    try:
        async with asyncio.timeout(limit_seconds):
            response = await upstream.transport.handle_async_request(request)
            try:
                if response.status_code != 200:
                    raise ValueError(f"status {response.status_code}")
                body = bytearray()
                async for chunk in response.aiter_raw():
                    body += chunk
                    if len(body) > _MAX_SERVICE_DOC_BYTES:
                        raise ValueError("document too large")
            finally:
                await response.aclose()
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (httpx.HTTPError, TimeoutError, ValueError) as exc:
        log.warning(
            "service_openapi_unavailable",
            upstream=upstream.service,
            error_type=type(exc).__name__,
            error_message=str(exc),
        )
        return None
    return document


class PublicOpenAPI:
    """The merged document, rebuilt at most every `ttl` seconds (sooner when one was missing)."""

    def __init__(
        self, app: FastAPI, *, upstreams: Upstreams | None, settings: ProxySettings
    ) -> None:
        self._app = app
        self._upstreams = upstreams
        self._ttl = settings.openapi_cache_seconds
        self._fetch_timeout = settings.openapi_fetch_timeout
        self._lock = asyncio.Lock()
        self._document: Document | None = None
        self._expires = 0.0

    def _current_upstreams(self) -> Upstreams:
        if self._upstreams is not None:
            return self._upstreams
        found = getattr(self._app.state, "upstreams", None)
        return found if isinstance(found, Upstreams) else Upstreams()

    async def document(self) -> Document:
        """Returns the merged document (cached)."""
        if self._document is not None and time.monotonic() < self._expires:
            return self._document
        async with self._lock:
            if self._document is not None and time.monotonic() < self._expires:
                return self._document
            upstreams = list(self._current_upstreams())
            fetched = await asyncio.gather(
                *(fetch_service_openapi(u, limit_seconds=self._fetch_timeout) for u in upstreams)
            )
            services = {u.service: doc for u, doc in zip(upstreams, fetched, strict=True) if doc}
            document = merge_public_openapi(
                self._app.openapi(), services, version=self._app.version
            )
            complete = len(services) == len(upstreams)
            ttl = self._ttl if complete else min(self._ttl, _PARTIAL_TTL_SECONDS)
            self._document, self._expires = document, time.monotonic() + ttl
            return document


def _remove_default_docs(app: FastAPI) -> None:
    """Drops FastAPI's `/openapi.json`, `/docs`, `/redoc` (the gateway's routes only)."""
    default = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    default.discard(None)
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) not in default]


def install_public_openapi(
    app: FastAPI, *, settings: ProxySettings, upstreams: Upstreams | None = None
) -> PublicOpenAPI:
    """Serves the public document at `/api/v1/openapi.json` and Swagger UI at `/docs` in place
    of FastAPI's defaults. `upstreams=None`: those the proxy router publishes on
    `app.state.upstreams` when the app starts."""
    _remove_default_docs(app)
    public = PublicOpenAPI(app, upstreams=upstreams, settings=settings)
    app.state.public_openapi = public
    router = APIRouter()

    @router.get(OPENAPI_PATH, include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(await public.document())

    @router.get(DOCS_PATH, include_in_schema=False)
    async def docs() -> HTMLResponse:
        # Swagger UI's files from the gateway itself: no outside host (no CDN, no validator).
        return get_swagger_ui_html(
            openapi_url=OPENAPI_PATH,
            title=TITLE,
            swagger_js_url=f"{SWAGGER_UI}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER_UI}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER_UI}/favicon-32x32.png",
            swagger_ui_parameters={"validatorUrl": None},
        )

    app.include_router(router)
    return public
