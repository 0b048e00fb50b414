"""Request ids: taken from a valid client `X-Request-ID` or made here, bound to every log line
of the request and echoed on every response (by `middleware.ServiceMiddleware`)."""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Final

from starlette.types import Scope

from avc_common.ids import new_id

REQUEST_ID_HEADER: Final = "X-Request-ID"
HEADER_KEY: Final = b"x-request-id"
_VALID: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")

request_id_var: ContextVar[str | None] = ContextVar("avc_request_id", default=None)


def current_request_id() -> str | None:
    """Returns the id of the request being handled (None outside a request)."""
    return request_id_var.get()


def new_request_id() -> str:
    """Returns a fresh request id (`req_…`)."""
    return new_id("req")


def valid_request_id(value: str | None) -> str | None:
    """Returns `value` when it is an acceptable client request id (1-128 of `[A-Za-z0-9._-]`)."""
    if value is not None and _VALID.fullmatch(value):
        return value
    return None


def client_request_id(scope: Scope) -> str | None:
    """Returns the request's valid `X-Request-ID` (None when absent or not acceptable)."""
    for key, value in scope.get("headers", ()):
        if key.lower() == HEADER_KEY:
            return valid_request_id(value.decode("latin-1"))
    return None
