"""The public API, called in-process on the dashboard user's behalf.

Each call goes through the gateway app itself (its whole stack: request ids, authentication,
rate limits, the proxy to the owning service) with the session's token as a bearer token, so the
dashboard can do nothing the public API does not offer. The caller's address and
`X-Forwarded-For` are passed on, so per-IP limits (login) count the real client.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

import httpx
from starlette.requests import Request

from avc_common.web.request_id import current_request_id
from avc_gateway.proxy.asgi_transport import StreamingASGITransport

_BASE_URL: Final = "http://dashboard.internal"
_TIMEOUT: Final = httpx.Timeout(60.0)
# Request headers the browser's call keeps on its way to the public API.
_PASSED_HEADERS: Final = ("x-forwarded-for", "x-request-id", "content-type", "user-agent")


class ApiError(Exception):
    """A public API error answer, kept whole for the page to show."""

    def __init__(self, status: int, body: Mapping[str, Any], request_id: str) -> None:
        self.status = status
        self.message = str(body.get("error") or f"HTTP {status}")
        self.code = str(body.get("code") or "error")
        self.request_id = str(body.get("request_id") or request_id)
        super().__init__(f"{self.status} {self.code}: {self.message}")


@dataclass(frozen=True)
class PublicApi:
    """Calls to the public API for one browser request (`token`: the session's, or None)."""

    request: Request
    token: str | None

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {k: v for k in _PASSED_HEADERS if (v := self.request.headers.get(k))}
        headers.pop("content-type", None)
        # One request id for the browser's call and the API call made for it (logs, errors).
        request_id = current_request_id()
        if request_id:
            headers["x-request-id"] = request_id
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[httpx.AsyncClient]:
        client_addr = self.request.client
        transport = StreamingASGITransport(
            self.request.app,
            client=(client_addr.host, client_addr.port) if client_addr else ("127.0.0.1", 0),
        )
        async with httpx.AsyncClient(
            transport=transport, base_url=_BASE_URL, timeout=_TIMEOUT
        ) as client:
            yield client

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
    ) -> Any:
        """Returns the decoded JSON answer (None for 204); raises ApiError for any error."""
        async with self._client() as client:
            response = await client.request(
                method, path, json=json, params=params, headers=self._headers()
            )
        request_id = response.headers.get("x-request-id", "")
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {}
            raise ApiError(response.status_code, body if isinstance(body, dict) else {}, request_id)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    @asynccontextmanager
    async def relay(
        self,
        method: str,
        path: str,
        *,
        query: bytes,
        body: AsyncIterable[bytes],
        headers: Mapping[str, str],
    ) -> AsyncIterator[httpx.Response]:
        """Streams one browser call through (body in, response out) as the session's user."""
        async with self._client() as client:
            request = client.build_request(
                method,
                path,
                params=httpx.QueryParams(query.decode("latin-1")),
                content=body,
                headers=self._headers(headers),
            )
            response = await client.send(request, stream=True)
            try:
                yield response
            finally:
                await response.aclose()
