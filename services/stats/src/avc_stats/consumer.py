"""The stats app's background work, run by its lifespan: the event consumer (queue
`stats.events`, routing key `video.*`) and the periodic re-drive."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from avc_common.logging import get_logger
from avc_common.web import Lifespan, metrics_registry
from avc_stats.config import StatsSettings
from avc_stats.repository import StatsRepository
from avc_stats.service import StatsMetrics, StatsService

QUEUE: Final = "stats.events"
# Every event stats counts is a `video.*` one; `view.threshold` is what it publishes.
ROUTING_KEYS: Final = ("video.*",)

log = get_logger(__name__)


def stats_lifespan(settings: StatsSettings) -> Lifespan:
    """Returns the lifespan part that builds the service, consumes events and re-drives."""

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
        redrive = asyncio.create_task(
            _redrive_forever(service, settings.redrive_interval_seconds), name="stats-redrive"
        )
        try:
            yield
        finally:
            redrive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await redrive
            await subscription.cancel()

    return lifespan


async def _redrive_forever(service: StatsService, interval: float) -> None:
    while True:  # first pass at start: what a crash left behind is finished at once
        try:
            await service.redrive()
        except Exception as exc:
            log.warning("stats_redrive_pass_failed", exc_info=exc)
        await asyncio.sleep(interval)
