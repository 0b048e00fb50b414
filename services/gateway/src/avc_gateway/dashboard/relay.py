"""`/dashboard/api/…`: the browser's script calls the public API through here, as the session's
user, so its token never reaches the page (see `session`). `/dashboard/api/v1/videos` is
`/api/v1/videos`; request bodies stream through (upload chunks are 5 MiB).

State-changing calls must carry the page's CSRF token in `X-CSRF-Token` and come from our
origin. Without a session the answer is the public 401 shape, which the script turns into a
trip to the login page.
"""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from avc_common.errors import NotFound, Unauthorized
from avc_gateway.dashboard.guard import check_csrf
from avc_gateway.dashboard.public_api import PublicApi
from avc_gateway.dashboard.session import CSRF_HEADER, session_token

router = APIRouter(include_in_schema=False)

PREFIX: Final = "/dashboard/api/v1/"
_SAFE_METHODS: Final = frozenset({"GET", "HEAD"})
# Request headers the public API needs for uploads; the browser's cookie never goes on.
_REQUEST_HEADERS: Final = (
    "content-type",
    "content-length",
    "x-upload-id",
    "x-chunk-index",
    "x-chunk-sha256",
)
# X-Request-ID is the same on both (passed on) and set on ours by the web layer.
_RESPONSE_HEADERS: Final = (
    "content-type",
    "retry-after",
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
)


@router.api_route(PREFIX + "{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
async def relay(request: Request, rest: str) -> Response:
    token = session_token(request)
    if token is None:
        raise Unauthorized("Your dashboard session has ended; log in again.")
    if request.method not in _SAFE_METHODS:
        check_csrf(request, request.headers.get(CSRF_HEADER))
    # Only the public API; the rest of the path is matched by the gateway's own table.
    if not rest or rest.startswith("/") or "//" in rest:
        raise NotFound()
    headers = {k: v for k in _REQUEST_HEADERS if (v := request.headers.get(k))}
    api = PublicApi(request, token)
    async with api.relay(
        request.method,
        "/api/v1/" + rest,
        query=request.scope.get("query_string", b""),
        body=request.stream(),
        headers=headers,
    ) as upstream:
        # Answers of the public API are small JSON documents: read whole, so nothing is left
        # open when the browser goes away before reading.
        content = await upstream.aread()
    kept = {k: v for k in _RESPONSE_HEADERS if (v := upstream.headers.get(k))}
    kept["cache-control"] = "no-store"
    return Response(content, status_code=upstream.status_code, headers=kept)
