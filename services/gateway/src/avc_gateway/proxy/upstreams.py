"""The services the gateway forwards to: a base URL and an httpx transport for each.

Separate processes: a keep-alive HTTP/1.1 connection pool per service (`pool.ServicePool`).
All-in-one: the service's in-process ASGI app behind a `StreamingASGITransport`. The proxy code
is the same for both.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

import httpx
from starlette.types import ASGIApp

from avc_common.config import ServiceName, Settings
from avc_common.logging import get_logger
from avc_gateway.proxy.asgi_transport import StreamingASGITransport
from avc_gateway.proxy.config import ProxySettings
from avc_gateway.proxy.pool import ServicePool

log = get_logger(__name__)

# Every service that owns public routes (the gateway serves its own).
PROXIED_SERVICES: Final[tuple[ServiceName, ...]] = ("upload", "media", "stats", "webhooks")


@dataclass(frozen=True)
class Upstream:
    service: str
    base_url: httpx.URL
    transport: httpx.AsyncBaseTransport
    timeout: httpx.Timeout
    in_process: bool = False

    def target(self, raw_path: bytes, query: bytes = b"") -> bytes:
        """Returns the request target at the service for a public path, byte for byte as the
        client sent it (the base URL's own path before it)."""
        target = self.base_url.raw_path.rstrip(b"/") + raw_path
        if query:
            target += b"?" + query
        return target

    def url(self, raw_path: bytes, query: bytes = b"") -> httpx.URL:
        """Returns the service URL for a public path. httpx normalises it (drops `.`/`..`
        segments, re-quotes): what is sent is `target(...)`, passed as the request's `target`
        extension, which both transports honour."""
        return self.base_url.copy_with(raw_path=self.target(raw_path, query))


class Upstreams:
    """Service name -> Upstream; closes the transports it was given."""

    def __init__(self, upstreams: Mapping[str, Upstream] | None = None) -> None:
        self._upstreams = dict(upstreams or {})

    def get(self, service: str) -> Upstream | None:
        """Returns how to reach `service` (None when it is not configured)."""
        return self._upstreams.get(service)

    def __iter__(self) -> Iterator[Upstream]:
        return iter(self._upstreams.values())

    async def aclose(self) -> None:
        """Closes every connection pool (and cancels in-process requests still running)."""
        for upstream in self._upstreams.values():
            await upstream.transport.aclose()


def timeout_from(settings: ProxySettings) -> httpx.Timeout:
    """Returns the per-request timeouts the settings ask for."""
    return httpx.Timeout(
        connect=settings.proxy_connect_timeout,
        read=settings.proxy_read_timeout,
        write=settings.proxy_write_timeout,
        pool=settings.proxy_pool_timeout,
    )


def http_transport(base_url: httpx.URL, settings: ProxySettings) -> ServicePool:
    """Returns a keep-alive HTTP/1.1 pool to one service (`pool.ServicePool`)."""
    return ServicePool(
        base_url,
        max_connections=settings.proxy_max_connections,
        max_keepalive_connections=settings.proxy_max_keepalive_connections,
        keepalive_expiry=settings.proxy_keepalive_expiry,
        # Only connection failures are retried (nothing has been sent then): safe for POSTs.
        retries=1,
    )


def service_urls(settings: Settings) -> dict[str, str]:
    """Returns the base URL of every proxied service (`AVC_<SERVICE>_URL`, "" for none)."""
    return {service: settings.service_url(service) for service in PROXIED_SERVICES}


def build_upstreams(
    settings: ProxySettings,
    service_apps: Mapping[str, ASGIApp] | None = None,
    *,
    urls: Mapping[str, str] | None = None,
) -> Upstreams:
    """Returns the upstreams: in-process apps where given (all-in-one mode), else the `urls`
    (`service_urls(settings)` of the shared settings)."""
    timeout = timeout_from(settings)
    built: dict[str, Upstream] = {}
    for service in PROXIED_SERVICES:
        app = (service_apps or {}).get(service)
        url = (urls or {}).get(service, "")
        if app is not None:
            built[service] = Upstream(
                service=service,
                base_url=httpx.URL(f"http://{service}.internal"),
                transport=StreamingASGITransport(app, raise_app_exceptions=False),
                timeout=timeout,
                in_process=True,
            )
        elif url:
            base_url = httpx.URL(url)
            built[service] = Upstream(
                service=service,
                base_url=base_url,
                transport=http_transport(base_url, settings),
                timeout=timeout,
            )
    missing = [s for s in PROXIED_SERVICES if s not in built]
    if missing:
        # Not fatal: those routes answer 503 until the gateway is configured and restarted.
        log.warning("upstreams_not_configured", services=missing)
    return Upstreams(built)
