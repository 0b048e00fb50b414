"""Runs an ASGI app under uvicorn until SIGINT/SIGTERM, then shuts down gracefully."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Final

import uvicorn
from starlette.types import ASGIApp

from avcaption.http_protocol import BoundedHttpToolsProtocol, ConnectionLimits
from avcaption.metrics_port import with_metrics_port

_STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# Under Kubernetes' default 30 s termination grace period.
GRACEFUL_SHUTDOWN_SECONDS: Final = 25


def serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    access_log: bool = True,
    limits: ConnectionLimits | None = None,
    metrics_port: int = 0,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serves `app` on host:port; returns after a clean shutdown (SIGINT or SIGTERM).
    `access_log=False` leaves out uvicorn's line per request; with `metrics_port`, `/metrics`
    is served there instead of on `port` (`metrics_port.with_metrics_port`). `on_ready` is
    called once the app has started and the port is listening."""
    if metrics_port:
        protocol = BoundedHttpToolsProtocol.with_limits(limits or ConnectionLimits())
        app = with_metrics_port(app, host=host, port=metrics_port, http=protocol)
    server = _Server(
        server_config(app, host=host, port=port, access_log=access_log, limits=limits),
        on_ready=on_ready,
    )
    with _stop_signals_end_cleanly(server):
        server.run()


class _Server(uvicorn.Server):
    """uvicorn's server, telling `on_ready` when its startup (the app's lifespan, then the
    listening socket) has succeeded."""

    def __init__(self, config: uvicorn.Config, *, on_ready: Callable[[], None] | None) -> None:
        super().__init__(config)
        self._on_ready = on_ready

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self._on_ready is not None:
            self._on_ready()


def server_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    access_log: bool = True,
    limits: ConnectionLimits | None = None,
) -> uvicorn.Config:
    """Returns the uvicorn configuration `serve` runs with (tests run it in-process)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # uvicorn's httptools protocol plus bounds on head size, read times and connections.
        http=BoundedHttpToolsProtocol.with_limits(limits or ConnectionLimits()),
        lifespan="on",
        # Logging is ours (avc_common.logging): uvicorn's records go through the same formatter.
        log_config=None,
        access_log=access_log,
        server_header=False,
        # Who the client is stays our decision (AVC_GATEWAY_TRUST_FORWARDED_FOR, read where the
        # IP is used): uvicorn's own proxy_headers would trust X-Forwarded-For/-Proto from
        # 127.0.0.1 (FORWARDED_ALLOW_IPS) whatever that setting says.
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )


@contextmanager
def _stop_signals_end_cleanly(server: uvicorn.Server) -> Iterator[None]:
    """After a graceful shutdown uvicorn re-raises the signal it caught with the previous
    handlers restored, so that the process dies of it (exit status 130/143). A stop we asked
    for is a success: with these handlers in place the re-raised signal is a no-op and the
    process exits 0. A signal arriving before uvicorn installs its own handlers stops it too.
    """

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
