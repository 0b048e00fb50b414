"""The stats service's ASGI app: per-account and per-video counters, view thresholds.

Its lifespan builds the service, consumes the video events (queue `stats.events`, routing key
`video.*`; the handler is `StatsService.handle_event`) and runs the re-drive on
`avc_common.periodic`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.periodic import periodic
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import Lifespan, create_service_app, metrics_registry, package_version
from avc_common.web.health import add_consumer_readiness_check
from avc_stats.config import StatsSettings
from avc_stats.repository import StatsRepository
from avc_stats.routes import router
from avc_stats.service import StatsMetrics, StatsService

SERVICE: Final = "stats"
QUEUE: Final = "stats.events"
# Every event stats counts is a `video.*` one; `view.threshold` is what it publishes.
ROUTING_KEYS: Final = ("video.*",)
# Replicas started together do not re-drive in lockstep.
REDRIVE_JITTER: Final = 0.1


def _stats_lifespan(settings: StatsSettings) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        repository = StatsRepository(app.state.documents)
        await repository.ensure_indexes()
        service = StatsService(
            repository=repository,
            bus=app.state.bus,
            settings=settings,
            metrics=StatsMetrics(metrics_registry(app)),
        )
        app.state.stats_service = service
        subscription = await app.state.bus.subscribe(
            QUEUE, ROUTING_KEYS, service.handle_event, prefetch=settings.consumer_prefetch
        )
        add_consumer_readiness_check(app, QUEUE, subscription)
        try:
            # First pass at start: what a crash left behind is finished at once.
            async with periodic(
                "stats-redrive",
                settings.redrive_interval_seconds,
                lambda _pass: service.redrive(),
                jitter=REDRIVE_JITTER,
            ) as redrive:
                app.state.stats_redrive = redrive
                yield
        finally:
            await subscription.cancel()

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    stats_settings: StatsSettings | None = None,
) -> FastAPI:
    """Returns the stats app (`stats_settings` default to the `AVC_STATS_*` environment)."""
    settings = settings if settings is not None else Settings()
    stats_settings = stats_settings if stats_settings is not None else StatsSettings()
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        routers=[router],
        lifespan=adapters_lifespan(
            service=SERVICE,
            settings=settings,
            adapters=adapters,
            needs=("documents", "bus"),
            then=_stats_lifespan(stats_settings),
        ),
        version=package_version("avc-stats"),
    )
    app.state.stats_settings = stats_settings
    return app
