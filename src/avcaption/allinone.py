"""`--target all`: every component in one process, the gateway facing clients.

The other components are not mounted under the gateway: their internal APIs would then be
reachable on the public port, and Starlette does not run a mounted app's lifespan anyway.
They stay separate ASGI apps, kept in `gateway.state.service_apps` (name -> app) for the
in-process transport the gateway's proxy uses in this mode, and `AllInOneApp` runs all their
lifespans together with the gateway's: services start first and stop last, so the gateway
never serves a request a service is not up for. The gateway's `/readyz` includes each embedded
component's readiness and its `/metrics` shows every component's series.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Final

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from avc_common.config import Settings
from avc_common.logging import get_logger
from avc_common.runtime import Adapters
from avc_common.web import (
    LifespanManager,
    add_readiness_check,
    expose_registries,
    metrics_registry,
    require_ready,
)
from avcaption.components import COMPONENTS, FRONT, embedded_components

# A backstop only: each embedded component's checks carry their own, shorter timeouts.
_EMBEDDED_READINESS_TIMEOUT: Final = 30.0

log = get_logger(__name__)


class AllInOneApp:
    """Serves `front`; on the server's lifespan events starts/stops every app together."""

    def __init__(self, front: FastAPI, embedded: Mapping[str, ASGIApp], adapters: Adapters) -> None:
        self.front = front
        self.embedded = dict(embedded)
        self.adapters = adapters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.front(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        async with AsyncExitStack() as stack:
            # Registered first, so it runs last: the shared adapters outlive every component.
            stack.push_async_callback(self.adapters.aclose)
            try:
                for app in self.embedded.values():
                    await stack.enter_async_context(LifespanManager(app))
                # The server's lifespan state goes to the front app: it is what requests get.
                await stack.enter_async_context(
                    LifespanManager(self.front, state=scope.get("state"))
                )
            except Exception as exc:
                log.error("startup_failed", exc_info=exc)
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            try:
                await stack.aclose()
            except Exception as exc:
                log.error("shutdown_failed", exc_info=exc)
                await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
                return
        await send({"type": "lifespan.shutdown.complete"})


def create_all_in_one_app(settings: Settings) -> AllInOneApp:
    """Returns the gateway app with every embedded component wired in (see the module doc)."""
    adapters = Adapters(settings)
    front = COMPONENTS[FRONT].create(settings, adapters)
    if not isinstance(front, FastAPI):
        raise TypeError(f"the {FRONT} component must be a FastAPI app, got {type(front)!r}")
    embedded = {c.name: c.create(settings, adapters) for c in embedded_components()}
    front.state.service_apps = embedded
    adapters.service_apps.update(embedded)
    for name, app in embedded.items():
        if isinstance(app, FastAPI):
            expose_registries(front, metrics_registry(app))
            add_readiness_check(
                front,
                name,
                functools.partial(require_ready, app),
                timeout=_EMBEDDED_READINESS_TIMEOUT,
            )
    return AllInOneApp(front, embedded, adapters)
