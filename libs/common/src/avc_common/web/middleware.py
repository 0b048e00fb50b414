"""`ServiceMiddleware`: the request id, the HTTP metrics and the last-resort error response of
every component, in one pure-ASGI layer.

They used to be three middlewares, each wrapping `send` again; every response message then went
through three more closures, and every request through three more awaits. One layer does the
same work once: the id is bound first (so everything inside, errors included, sees it), the
status the client gets is what the metrics count (also the 500 an exception turned into), and
the id goes on the response last (replacing one an inner layer may have set).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avc_common.logging import get_logger
from avc_common.web.errors import PASSTHROUGH, error_response, render_exception
from avc_common.web.metrics import METHODS, HttpMetrics, RouteTemplates
from avc_common.web.request_id import HEADER_KEY, client_request_id, new_request_id, request_id_var

RawHeaders = list[tuple[bytes, bytes]]
ResponseHeaders = Callable[[Scope, RawHeaders], RawHeaders]
"""Returns a response's headers edited from what the request left in its scope (e.g. its
rate-limit state in `scope["state"]`); called once per response, when it starts."""

_START: Final = "http.response.start"

log = get_logger(__name__)


class ServiceMiddleware:
    """Pure ASGI (BaseHTTPMiddleware would break streaming and contextvars propagation).

    For each HTTP request: a request id (a valid client `X-Request-ID` or a new one) bound to
    every log line and echoed on the response, whatever made it; the request counted and timed
    by route template (never the raw path: ids and `?api_key=` must not become label values);
    an exception that escaped the routes answered in the public error shape (500
    `internal_error` with the traceback logged, or the AppError's own shape when middleware
    raised one). `response_headers`, when given, adds headers to every response too.

    The log context is restored afterwards: an in-process call (all-in-one mode) runs in the
    caller's task, and must not leave its `service`/`account_id` behind there."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str | None,
        metrics: HttpMetrics | None = None,
        response_headers: ResponseHeaders | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.metrics = metrics
        self.response_headers = response_headers
        self._templates = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "websocket":
                await self._websocket(scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        request_id = client_request_id(scope) or new_request_id()
        id_header = (HEADER_KEY, request_id.encode("latin-1"))
        extra = self.response_headers
        if extra is not None:
            # Created here so code further in that copies the scope still shares this dict.
            scope.setdefault("state", {})
        status = 0  # not started yet
        started = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == _START:
                status = int(message["status"])
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER_KEY]
                headers.append(id_header)
                if extra is not None:
                    headers = extra(scope, headers)
                message = {**message, "headers": headers}
            await send(message)

        saved = structlog.contextvars.get_contextvars()
        token = request_id_var.set(request_id)
        if self.service:
            structlog.contextvars.bind_contextvars(request_id=request_id, service=self.service)
        else:
            structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            try:
                await self.app(scope, receive, send_wrapper)
            except Exception as exc:
                if isinstance(exc, PASSTHROUGH):
                    raise
                if status:
                    # Too late for an error body; the server will drop the connection.
                    log.error("exception_after_response_started", exc_info=exc)
                    raise
                await error_response(render_exception(exc))(scope, receive, send_wrapper)
        finally:
            if self.metrics is not None:
                # Nothing sent: the server answers 500 (or the client went away).
                self._observe(scope, status or 500, time.perf_counter() - started)
            structlog.contextvars.clear_contextvars()
            if saved:
                structlog.contextvars.bind_contextvars(**saved)
            request_id_var.reset(token)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        metrics = self.metrics
        assert metrics is not None
        method = scope.get("method", "GET")
        method = method if method in METHODS else "OTHER"
        route = self._templates.resolve(scope)
        metrics.requests.labels(self.service, method, route, str(status)).inc()
        metrics.duration.labels(self.service, method, route).observe(seconds)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A websocket gets its request id too (on the accept, and in its log lines)."""
        request_id = client_request_id(scope) or new_request_id()
        id_header = (HEADER_KEY, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "websocket.accept":
                headers = [h for h in message.get("headers", ()) if h[0].lower() != HEADER_KEY]
                message = {**message, "headers": [*headers, id_header]}
            await send(message)

        saved = structlog.contextvars.get_contextvars()
        token = request_id_var.set(request_id)
        bound = {"request_id": request_id}
        if self.service:
            bound["service"] = self.service
        structlog.contextvars.bind_contextvars(**bound)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()
            if saved:
                structlog.contextvars.bind_contextvars(**saved)
            request_id_var.reset(token)
