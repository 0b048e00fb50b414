"""The adapters a process opens, once, from its settings.

Each component asks this object for what it needs; in all-in-one mode every component of the
process shares one instance, which is what lets the in-process bus connect them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Literal, get_args

from fastapi import FastAPI
from starlette.types import ASGIApp

from avc_common.bus import Bus, open_bus
from avc_common.documents import DocumentDatabase, open_documents
from avc_common.objects import ObjectStore, open_objects
from avc_common.private_paths import PRIVATE_DIR, tighten
from avc_common.ratelimit import RateLimiter, open_ratelimiter
from avc_common.service_client import ServiceClients
from avc_common.web import Lifespan, add_readiness_check

if TYPE_CHECKING:
    from avc_common.config import ServiceName, Settings


class Adapters:
    """Opens each adapter on first use and closes them all at the end (in reverse order)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The data dir holds the databases, stored objects and generated secrets: 0700 even if
        # it was made by hand or by an earlier version (the sqlite and file adapters make their
        # own folders private too, wherever they are configured).
        tighten(settings.resolved_data_dir, PRIVATE_DIR)
        self._lock = asyncio.Lock()
        self._documents: dict[str, DocumentDatabase] = {}
        self._objects: ObjectStore | None = None
        self._bus: Bus | None = None
        self._ratelimiter: RateLimiter | None = None
        # All-in-one mode registers every component's app here, so calls between services
        # stay in the process.
        self.service_apps: dict[str, ASGIApp] = {}
        self._service_clients: ServiceClients | None = None

    async def documents(self, service: ServiceName) -> DocumentDatabase:
        """Returns the service's own database (one per service, also in all-in-one mode)."""
        async with self._lock:
            if service not in self._documents:
                url = self.settings.effective_database_url
                self._documents[service] = await open_documents(url, service)
            return self._documents[service]

    async def objects(self) -> ObjectStore:
        """Returns the started object store."""
        async with self._lock:
            if self._objects is None:
                store = open_objects(self.settings.effective_storage_url)
                await store.start()
                self._objects = store
            return self._objects

    async def bus(self) -> Bus:
        """Returns the started bus."""
        async with self._lock:
            if self._bus is None:
                bus = open_bus(
                    self.settings.effective_bus_url,
                    exchange=self.settings.bus_exchange,
                    queue_prefix=self.settings.bus_queue_prefix,
                )
                await bus.start()
                self._bus = bus
            return self._bus

    async def ratelimiter(self) -> RateLimiter:
        """Returns the rate-limit state store."""
        async with self._lock:
            if self._ratelimiter is None:
                self._ratelimiter = open_ratelimiter(
                    self.settings.effective_ratelimit_url,
                    key_prefix=self.settings.ratelimit_key_prefix,
                )
            return self._ratelimiter

    def service_clients(self) -> ServiceClients:
        """Returns the clients for calling other services' internal APIs."""
        if self._service_clients is None:
            self._service_clients = ServiceClients(self.settings, self.service_apps)
        return self._service_clients

    async def aclose(self) -> None:
        """Closes everything opened: consumers stop before the databases they write to close."""
        async with self._lock:
            if self._service_clients is not None:
                await self._service_clients.aclose()
                self._service_clients = None
            if self._bus is not None:
                await self._bus.close()
                self._bus = None
            if self._ratelimiter is not None:
                await self._ratelimiter.close()
                self._ratelimiter = None
            if self._objects is not None:
                await self._objects.close()
                self._objects = None
            for db in self._documents.values():
                await db.close()
            self._documents.clear()


Need = Literal["documents", "objects", "bus", "ratelimiter"]


def adapters_lifespan(
    *,
    service: ServiceName,
    settings: Settings,
    adapters: Adapters | None,
    needs: Collection[Need],
    then: Lifespan | None = None,
) -> Lifespan:
    """Returns a lifespan that puts the service's adapters on `app.state` (`documents`,
    `objects`, `bus`, `ratelimiter`), registers a readiness check for each, runs `then`, and
    closes the adapters at the end unless they were handed in (all-in-one mode shares them)."""
    unknown = set(needs) - set(get_args(Need))
    if unknown:
        raise ValueError(f"unknown adapters {sorted(unknown)}")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = adapters is None
        opened = Adapters(settings) if adapters is None else adapters
        try:
            app.state.adapters = opened
            if "documents" in needs:
                app.state.documents = await opened.documents(service)
                add_readiness_check(app, "documents", app.state.documents.ping)
            if "objects" in needs:
                app.state.objects = await opened.objects()
                add_readiness_check(app, "objects", app.state.objects.ping)
            if "bus" in needs:
                app.state.bus = await opened.bus()
                add_readiness_check(app, "bus", app.state.bus.ping)
            if "ratelimiter" in needs:
                app.state.ratelimiter = await opened.ratelimiter()
                add_readiness_check(app, "ratelimiter", app.state.ratelimiter.ping)
            async with then(app) if then is not None else nullcontext():
                yield
        finally:
            if own:
                await opened.aclose()

    return lifespan
