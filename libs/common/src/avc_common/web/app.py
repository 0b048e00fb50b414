"""`create_service_app`: the FastAPI app every component starts from, with request ids,
metrics, the public error shape, `/healthz`, `/readyz` and `/metrics` already in place."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from types import MappingProxyType
from typing import Any, Final

import structlog
from fastapi import APIRouter, FastAPI
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware

from avc_common.config import Settings
from avc_common.logging import get_logger
from avc_common.web.errors import ErrorBody, install_error_handlers
from avc_common.web.health import (
    DEFAULT_CHECK_TIMEOUT,
    ReadinessCheck,
    add_readiness_check,
    install_health,
)
from avc_common.web.metrics import HttpMetrics, install_metrics
from avc_common.web.middleware import ResponseHeaders, ServiceMiddleware

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
"""Builds the app's state (clients, stores, consumers) on `app.state` and tears it down."""

_NO_CHECKS: Final[Mapping[str, ReadinessCheck]] = MappingProxyType({})

log = get_logger(__name__)


def package_version(distribution: str) -> str:
    """Returns the installed version of `distribution` ("0.0.0" when not installed)."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def create_service_app(
    *,
    service: str,
    settings: Settings,
    routers: Sequence[APIRouter] = (),
    readiness: Mapping[str, ReadinessCheck] = _NO_CHECKS,
    lifespan: Lifespan | None = None,
    title: str | None = None,
    version: str = "0.0.0",
    description: str = "",
    readiness_timeout: float = DEFAULT_CHECK_TIMEOUT,
    response_headers: ResponseHeaders | None = None,
    **fastapi_kwargs: Any,
) -> FastAPI:
    """Returns a FastAPI app for one component.

    `lifespan(app)` builds the app's state on `app.state` (never at import time) and may
    register readiness checks with `add_readiness_check`. `settings` is on `app.state.settings`.
    Body size limits: raise `PayloadTooLarge` (FastAPI's `max_body_size`, app or route level,
    answers in plain text). `response_headers(scope)` adds headers to every response, errors
    included (the gateway's rate-limit headers).
    """

    @asynccontextmanager
    async def app_lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The lifespan runs in its own task: lines it logs, and tasks it starts, say which
        # component they belong to (several share one process in all-in-one mode).
        structlog.contextvars.bind_contextvars(service=service)
        log.info("component_starting")
        async with lifespan(app) if lifespan is not None else nullcontext():
            log.info("component_started")
            yield
            log.info("component_stopping")
        log.info("component_stopped")

    if "max_body_size" in fastapi_kwargs:
        # Starlette's limiter answers a plain-text 413 from outside our middleware.
        raise TypeError("max_body_size bypasses the error shape; raise PayloadTooLarge instead")
    registry = CollectorRegistry()
    extra_middleware: Sequence[Middleware] = fastapi_kwargs.pop("middleware", None) or ()
    app = FastAPI(
        title=title or f"AVCaption {service}",
        version=version,
        description=description,
        lifespan=app_lifespan,
        # Outermost first: request id, metrics and the last-resort error response in one
        # layer (see `ServiceMiddleware`), so they cover everything inside, also 500s.
        middleware=[
            Middleware(
                ServiceMiddleware,
                service=service,
                metrics=HttpMetrics(registry),
                response_headers=response_headers,
            ),
            *extra_middleware,
        ],
        **fastapi_kwargs,
    )
    app.state.service = service
    app.state.settings = settings
    install_error_handlers(app)
    install_health(app, default_timeout=readiness_timeout)
    for name, check in readiness.items():
        add_readiness_check(app, name, check)
    install_metrics(app, registry)
    for router in routers:
        app.include_router(router)
    _document_validation_errors(app)
    return app


def _document_validation_errors(app: FastAPI) -> None:
    """FastAPI documents 422 with its own `HTTPValidationError`; ours is `ErrorBody`."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        schema = generate()
        _use_error_body_for_422(schema)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


_FASTAPI_422: Final = "#/components/schemas/HTTPValidationError"
_ERROR_BODY: Final = "#/components/schemas/ErrorBody"


def _use_error_body_for_422(schema: dict[str, Any]) -> None:
    replaced = False
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            response = operation.get("responses", {}).get("422", {})
            media = response.get("content", {}).get("application/json", {})
            if media.get("schema", {}).get("$ref") == _FASTAPI_422:
                media["schema"] = {"$ref": _ERROR_BODY}
                replaced = True
    if not replaced:
        return
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(
        "ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    paths = json.dumps(schema.get("paths", {}))
    if _FASTAPI_422 not in paths:
        schemas.pop("HTTPValidationError", None)
        if "#/components/schemas/ValidationError" not in json.dumps(schemas):
            schemas.pop("ValidationError", None)
