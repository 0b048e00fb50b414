"""`/metrics` on its own port (`AVC_METRICS_PORT`), so the public port need not expose it.

`with_metrics_port(app, …)` wraps a component's app: on the main port `/metrics` answers 404 in
the error shape; a second, small uvicorn server on the metrics port serves only `/metrics`
(every registry the component exposes, the embedded services' too in all-in-one mode). It is
started once the app's startup completed and stopped when the app's shutdown begins, so it
lives exactly as long as the app; signals stay the main server's.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import uvicorn
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from avc_common.errors import NotFound
from avc_common.logging import get_logger
from avc_common.web.metrics import render_metrics
from avc_common.web.request_id import REQUEST_ID_HEADER, client_request_id, new_request_id

log = get_logger("avcaption.metrics")

METRICS_PATH = "/metrics"


class _SignalFreeServer(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to the main server, which stops this one through the lifespan."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _not_found(scope: Scope) -> Response:
    request_id = client_request_id(scope) or new_request_id()
    return JSONResponse(
        NotFound().body(request_id), status_code=404, headers={REQUEST_ID_HEADER: request_id}
    )


def metrics_only_app(component: Any) -> ASGIApp:
    """Returns an ASGI app serving `GET /metrics` of `component` (its registries), 404 else."""
    front = getattr(component, "front", component)  # AllInOneApp: the gateway's

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == METRICS_PATH and scope["method"] in ("GET", "HEAD"):
            accept = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"accept"), "")
            response = render_metrics(front.state.metrics_registries, accept)
        else:
            response = _not_found(scope)
        await response(scope, receive, send)

    return app


class WithMetricsPort:
    """`app` minus `/metrics`, plus the metrics server on `port` (see the module doc)."""

    def __init__(self, app: ASGIApp, *, config: uvicorn.Config) -> None:
        self.app = app
        self._config = config
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == METRICS_PATH:
            await _not_found(scope)(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_up(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                try:
                    await self._start()
                except OSError as exc:
                    message = {"type": "lifespan.startup.failed", "message": f"metrics: {exc}"}
            await send(message)

        async def receive_down() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self._stop()
            return message

        try:
            await self.app(scope, receive_down, send_up)
        finally:
            await self._stop()

    async def _start(self) -> None:
        config = self._config
        # Bound here: a port in use is a startup failure, not uvicorn's sys.exit in a task.
        sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.host, config.port))
        except OSError:
            sock.close()
            raise
        sock.set_inheritable(True)
        self._server = _SignalFreeServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="metrics")
        while not self._server.started:
            if self._task.done():
                self._task.result()
                raise OSError("the metrics server stopped while starting")
            await asyncio.sleep(0.01)
        log.info("metrics_listening", host=config.host, port=config.port)

    async def _stop(self) -> None:
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        with suppress(Exception):
            await task


def with_metrics_port(app: ASGIApp, *, host: str, port: int, **options: Any) -> WithMetricsPort:
    """Returns `app` with `/metrics` moved to `host:port` (`options` go to uvicorn.Config)."""
    config = uvicorn.Config(
        metrics_only_app(app),
        host=host,
        port=port,
        lifespan="off",
        log_config=None,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        **options,
    )
    return WithMetricsPort(app, config=config)
