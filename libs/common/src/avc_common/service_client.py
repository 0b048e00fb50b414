"""HTTP clients for one service to call another's internal API (upload → media "register").

Over the network when components run as separate processes (`AVC_<SERVICE>_URL`), in-process
when they share one (all-in-one mode registers the apps on `Adapters.service_apps`): the calling
code is the same either way, only the httpx transport differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import httpx
from starlette.types import ASGIApp

from avc_common.config import ServiceName, Settings
from avc_common.internal_auth import INTERNAL_TOKEN_HEADER, Caller, mint_internal_token
from avc_common.web.request_id import REQUEST_ID_HEADER

_TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)


class ServiceClients:
    """One pooled httpx client per target service, created on first use."""

    def __init__(self, settings: Settings, in_process: Mapping[str, ASGIApp] | None = None) -> None:
        self._settings = settings
        self._in_process = in_process if in_process is not None else {}
        self._clients: dict[str, httpx.AsyncClient] = {}

    def client(self, service: ServiceName) -> httpx.AsyncClient:
        """Returns the client for `service` (base URL set; add the caller with `headers_for`)."""
        if service not in self._clients:
            app = self._in_process.get(service)
            if app is not None:
                transport: httpx.AsyncBaseTransport = httpx.ASGITransport(app=app)
                base_url = f"http://{service}.internal"
            else:
                transport = httpx.AsyncHTTPTransport(retries=1)
                base_url = self._settings.service_url(service)
            self._clients[service] = httpx.AsyncClient(
                transport=transport, base_url=base_url, timeout=_TIMEOUT
            )
        return self._clients[service]

    def headers_for(self, caller: Caller) -> dict[str, str]:
        """Returns the headers that carry `caller` (and its request id) to another service."""
        headers = {
            INTERNAL_TOKEN_HEADER: mint_internal_token(
                caller, secret=self._settings.internal_secret_value
            )
        }
        if caller.request_id:
            headers[REQUEST_ID_HEADER] = caller.request_id
        return headers

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
