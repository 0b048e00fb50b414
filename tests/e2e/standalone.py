"""Small servers for measuring the gateway's proxy on its own, as separate processes.

    python tests/e2e/standalone.py upstream --port P
        a fake service: counts the bytes of any request body, streams `?size=N` bytes back
    python tests/e2e/standalone.py gateway --port P     (AVC_UPLOAD_URL etc. in the env)
        the gateway's app stack (request ids, metrics, error shape) with only the proxy router,
        admitting every request as one enterprise account: no database, no rate limits

Both stop cleanly on SIGTERM (exit 0) and log JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import json
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from starlette.types import Receive, Scope, Send

from avc_common.config import Settings
from avc_common.logging import configure_logging
from avc_common.web import create_service_app
from avc_gateway.principal import Principal
from avc_gateway.proxy import ProxySettings, create_proxy_router
from avc_gateway.public_routes import PublicRoute
from avcaption.server import serve

CHUNK = 64 * 1024
PRINCIPAL = Principal(
    account_id="acct_standalone",
    email="standalone@example.com",
    plan="enterprise",
    api_preview=False,
    method="api_key",
    key_id="key_standalone",
)


async def admit_everyone(request: Request, route: PublicRoute) -> Principal | None:
    """Returns the same principal for every request (the proxy alone is being measured)."""
    return PRINCIPAL


def gateway_app() -> FastAPI:
    app = create_service_app(service="gateway", settings=Settings())
    app.include_router(create_proxy_router(admit=admit_everyone, settings=ProxySettings()))
    return app


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def upstream_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A raw ASGI fake service (nothing buffered: it measures nothing but the gateway)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] in ("/readyz", "/healthz"):
        await _json(send, 200, {"status": "ready"})
        return
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        received += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    size = int(parse_qs(scope["query_string"].decode()).get("size", ["0"])[0])
    if scope["method"] != "GET" or not size:
        await _json(send, 200, {"received": received})
        return
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(size).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    block = b"\xab" * CHUNK
    sent = 0
    while sent < size:
        part = block[: min(CHUNK, size - sent)]
        sent += len(part)
        await send({"type": "http.response.body", "body": part, "more_body": sent < size})


def main() -> None:

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=["upstream", "gateway"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    configure_logging(service=f"standalone-{args.role}", level="INFO", json=True)
    app = gateway_app() if args.role == "gateway" else upstream_app
    serve(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
