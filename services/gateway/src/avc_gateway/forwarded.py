"""`X-Forwarded-Proto` from a trusted proxy (`AVC_GATEWAY_TRUST_FORWARDED_FOR=true` only).

uvicorn's own proxy-header handling is off (`avcaption.server`), so that only our setting
decides what the client said about itself. Behind a proxy that terminates TLS, the scheme the
client used is the proxy's last `X-Forwarded-Proto` value: the request's scheme becomes that
(what the proxy forwards as `X-Forwarded-Proto`, and what `request.url` says, e.g. for secure
cookies and origin checks). The client address is left as the TCP peer: the rate limits take
the last `X-Forwarded-For` hop themselves (`ratelimits.client_ip`), and the proxy appends the
peer to the chain it forwards.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

_SCHEMES: Final = frozenset({"http", "https"})


class TrustedForwardedProto:
    """Pure ASGI: the scheme from the last `X-Forwarded-Proto` value, when it is http(s)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            values = [v for k, v in scope["headers"] if k == b"x-forwarded-proto"]
            if values:
                last = values[-1].decode("latin-1").split(",")[-1].strip().lower()
                if last in _SCHEMES:
                    scope["scheme"] = last
        await self.app(scope, receive, send)
