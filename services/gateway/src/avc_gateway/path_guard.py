"""Refuses, before routing, request paths that another hop could read as a different path.

The gateway decides what a request may do from its path (the route table), then forwards that
path to a service. A path with dot segments (`/play/x/../../metrics`), or with a segment that
decodes to a separator (`..%2f`, `%5c`), means one thing to the table and possibly another to
whatever normalises or decodes it next (httpx drops `..`, a file system or another proxy may
decode `%2f`). No public path needs either, so they are refused outright: 400 `bad_request` in
the error shape, whatever the route, credentials or method.
"""

from __future__ import annotations

from typing import ClassVar, Final
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

from avc_common.errors import BadRequest
from avc_common.web import error_response

_DOT_SEGMENTS: Final = frozenset({b".", b".."})
# In a decoded segment: a separator for someone (`/`, `\`) or the end of a C string.
_FORBIDDEN_BYTES: Final = (b"/", b"\\", b"\x00")


class AmbiguousPath(BadRequest):
    default_message: ClassVar[str] = (
        "The request path must not contain `.` or `..` segments, nor encoded `/`, `\\` or NUL."
    )


def is_ambiguous(raw_path: bytes) -> bool:
    """Returns whether `raw_path` (as sent, percent-encoded) has a dot segment or a segment
    hiding a separator, decoded once or twice (`%252e%252e` is `..` to a hop decoding again)."""
    if b"." not in raw_path and b"%" not in raw_path and b"\\" not in raw_path:
        return False  # the common case, without splitting
    for segment in raw_path.split(b"/"):
        once = unquote_to_bytes(segment)
        if _bad_segment(once):
            return True
        if b"%" in once and _bad_segment(unquote_to_bytes(once)):
            return True
    return False


def _bad_segment(segment: bytes) -> bool:
    return segment in _DOT_SEGMENTS or any(b in segment for b in _FORBIDDEN_BYTES)


class PathGuard:
    """Pure ASGI: answers 400 for an ambiguous path (see the module doc), else passes on.

    Placed inside `ServiceMiddleware`, so the answer has the request id and is counted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw_path = scope.get("raw_path")
            if raw_path is None:  # optional in ASGI: the decoded path then
                raw_path = str(scope.get("path", "")).encode("utf-8", "surrogateescape")
            if is_ambiguous(raw_path):
                if scope["type"] == "http":
                    await error_response(AmbiguousPath())(scope, receive, send)
                else:
                    await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)
