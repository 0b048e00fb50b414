"""The stats service's ASGI app: per-account and per-video counters, view thresholds."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import create_service_app, package_version
from avc_stats.config import StatsSettings
from avc_stats.consumer import stats_lifespan
from avc_stats.routes import router

SERVICE: Final = "stats"


def create_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    stats_settings: StatsSettings | None = None,
) -> FastAPI:
    """Returns the stats app; its lifespan runs the event consumer and the re-drive
    (`stats_settings` default to the `AVC_STATS_*` environment)."""
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
            then=stats_lifespan(stats_settings),
        ),
        version=package_version("avc-stats"),
    )
    app.state.stats_settings = stats_settings
    return app
