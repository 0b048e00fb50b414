"""Forwards one admitted request to its service and streams the answer back.

Neither body is ever held whole: the client's body goes to the service as it arrives, the
service's response goes to the client as it arrives (one of at most 64 KiB by its
Content-Length is read first and sent in one piece). The service's own answers (errors
included) pass through unchanged; only failures to get one become gateway errors:
cannot connect 503, no answer in time 504, an invalid answer 502.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar, Final

import anyio
import httpx
from starlette.requests import ClientDisconnect, Request
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from avc_common.errors import AppError, BadGateway, GatewayTimeout, ServiceUnavailable
from avc_common.logging import get_logger
from avc_gateway.proxy.headers import (
    client_response_headers,
    has_body,
    upstream_request_headers,
    without_api_key,
)
from avc_gateway.proxy.upstreams import Upstream

log = get_logger(__name__)

# Responses up to this size (by Content-Length) are sent without watching for a disconnect.
_WATCH_DISCONNECT_ABOVE: Final = 64 * 1024


class ClientClosedRequest(AppError):
    """The client went away before its request body was sent on (nginx's 499, for metrics)."""

    status: ClassVar[int] = 499
    code: ClassVar[str] = "client_closed_request"
    default_message: ClassVar[str] = "The client closed the request."


class UpstreamResponse(StreamingResponse):
    """The service's response, streamed; the upstream response is closed whatever happens
    (complete, failed mid-body, or the client disconnected and the stream was cancelled)."""

    def __init__(self, upstream: httpx.Response, *, service: str) -> None:
        super().__init__(upstream.aiter_raw(), status_code=upstream.status_code)
        self.raw_headers = client_response_headers(upstream.headers.raw)
        self._upstream = upstream
        self._service = service
        length = upstream.headers.get("content-length", "")
        self._small = length.isdigit() and int(length) <= _WATCH_DISCONNECT_ABOVE

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            if self._small:
                # A few KiB at most (the service said how many): read whole, then sent as one
                # message, without the task group that watches for a disconnect (it costs more
                # than such a body) nor a message per chunk and an empty last one.
                await self._send_whole(send)
            else:
                await super().__call__(scope, receive, send)
        finally:
            # Shielded: on a client disconnect this runs inside a cancelled scope.
            with anyio.CancelScope(shield=True):
                await self._upstream.aclose()

    async def _send_whole(self, send: Send) -> None:
        try:
            body = b"".join([chunk async for chunk in self._upstream.aiter_raw()])
        except httpx.HTTPError as exc:
            # Nothing sent yet: the client gets the gateway's error instead of a cut body.
            raise _failure(self._service, exc) from exc
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _failure(service: str, exc: httpx.HTTPError) -> AppError:
    """Returns the gateway error for a failed exchange with a service (and logs it)."""
    error: AppError
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
        error = ServiceUnavailable(f"The {service} service is unavailable.")
    elif isinstance(exc, httpx.TimeoutException):
        error = GatewayTimeout(f"The {service} service did not answer in time.")
    else:
        error = BadGateway(f"The {service} service answered with an invalid response.")
    # The exception's text only: URLs are not in it, so no query string (or key) is logged.
    log.warning(
        "upstream_failed",
        upstream=service,
        error_type=type(exc).__name__,
        error_message=str(exc),
        status=error.status,
    )
    return error


async def forward(
    request: Request, *, upstream: Upstream, internal_token: str | None, request_id: str | None
) -> UpstreamResponse:
    """Returns the service's streamed response to `request`; raises the gateway's AppError
    when the service cannot be reached or answers nonsense."""
    scope = request.scope
    raw_path: bytes = scope.get("raw_path") or request.url.path.encode()
    headers: list[tuple[bytes, bytes]] = list(scope["headers"])
    query = without_api_key(scope.get("query_string", b""))
    outbound = httpx.Request(
        request.method,
        upstream.url(raw_path, query),
        headers=upstream_request_headers(
            headers,
            request_id=request_id,
            internal_token=internal_token,
            client_host=request.client.host if request.client else None,
            # The scope's own: `request.url` would build and parse the whole URL.
            scheme=scope.get("scheme", "http"),
        ),
        content=_body(request) if has_body(headers) else b"",
        # The path the gateway matched, exactly: the URL above is normalised by httpx.
        extensions={
            "timeout": upstream.timeout.as_dict(),
            "target": upstream.target(raw_path, query),
        },
    )
    try:
        # The transport directly, not an AsyncClient: no cookie jar shared between users,
        # no default headers (Accept-Encoding!), no redirects followed, no proxy from the env.
        response = await upstream.transport.handle_async_request(outbound)
    except ClientDisconnect:
        raise ClientClosedRequest() from None
    except httpx.HTTPError as exc:
        raise _failure(upstream.service, exc) from exc
    response.request = outbound
    return UpstreamResponse(response, service=upstream.service)
