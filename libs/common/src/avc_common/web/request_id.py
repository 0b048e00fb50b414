"""Request ids: taken from a valid client `X-Request-ID` or made here, bound to every log line
of the request and echoed on every response."""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Final

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avc_common.ids import new_id

REQUEST_ID_HEADER: Final = "X-Request-ID"
_HEADER_KEY: Final = b"x-request-id"
_VALID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")

_current: ContextVar[str | None] = ContextVar("avc_request_id", default=None)


def current_request_id() -> str | None:
    """Returns the id of the request being handled (None outside a request)."""
    return _current.get()


def new_request_id() -> str:
    """Returns a fresh request id (`req_…`)."""
    return new_id("req")


def valid_request_id(value: str | None) -> str | None:
    """Returns `value` when it is an acceptable client request id (1-128 of `[A-Za-z0-9._-]`)."""
    if value is not None and _VALID.fullmatch(value):
        return value
    return None


def _client_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == _HEADER_KEY:
            return valid_request_id(value.decode("latin-1"))
    return None


class RequestIdMiddleware:
    """Pure ASGI (BaseHTTPMiddleware would break streaming and contextvars propagation).

    Sits outside everything else, so the id is on 404s, 500s and error bodies too. The log
    context is restored afterwards: an in-process call (all-in-one mode) runs in the caller's
    task, and must not leave its `service`/`account_id` behind there."""

    def __init__(self, app: ASGIApp, *, service: str | None = None) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope) or new_request_id()
        header = (_HEADER_KEY, request_id.encode("latin-1"))

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = [h for h in message.get("headers", ()) if h[0].lower() != _HEADER_KEY]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        saved = structlog.contextvars.get_contextvars()
        token = _current.set(request_id)
        bound: dict[str, str] = {"request_id": request_id}
        if self.service:
            bound["service"] = self.service
        structlog.contextvars.bind_contextvars(**bound)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()
            structlog.contextvars.bind_contextvars(**saved)
            _current.reset(token)
