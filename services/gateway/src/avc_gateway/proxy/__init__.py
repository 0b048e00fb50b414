"""The gateway's reverse proxy: every public route a service owns is forwarded to it, streamed,
with the caller's identity in a per-request internal token (see `router` and `forward`)."""

from avc_gateway.proxy.asgi_transport import StreamingASGITransport
from avc_gateway.proxy.config import ProxySettings
from avc_gateway.proxy.pool import ServicePool
from avc_gateway.proxy.router import AdmitFn, create_proxy_router, proxied_templates
from avc_gateway.proxy.upstreams import Upstream, Upstreams, build_upstreams

__all__ = [
    "AdmitFn",
    "ProxySettings",
    "ServicePool",
    "StreamingASGITransport",
    "Upstream",
    "Upstreams",
    "build_upstreams",
    "create_proxy_router",
    "proxied_templates",
]
