"""The upload service's ASGI app: direct and chunked uploads, source objects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import create_service_app, metrics_registry, package_version
from avc_upload.config import UploadSettings
from avc_upload.media import MediaClient
from avc_upload.metrics import UploadMetrics
from avc_upload.repository import UploadRepository
from avc_upload.routes import router
from avc_upload.service import UploadService
from avc_upload.sweep import sweeper_running

SERVICE: Final = "upload"
COLLECTION: Final = "uploads"


def create_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    upload_settings: UploadSettings | None = None,
) -> FastAPI:
    """Returns the upload app. Its state (`app.state.upload_service`) is built in the lifespan
    on the adapters `adapters_lifespan` opened (or was handed, in all-in-one mode)."""
    settings = settings if settings is not None else Settings()
    limits = upload_settings if upload_settings is not None else UploadSettings()

    @asynccontextmanager
    async def upload_state(app: FastAPI) -> AsyncIterator[None]:
        repository = UploadRepository(app.state.documents.collection(COLLECTION))
        await repository.ensure_indexes()
        service = UploadService(
            repository=repository,
            objects=app.state.objects,
            bus=app.state.bus,
            media=MediaClient(app.state.adapters.service_clients()),
            settings=limits,
            metrics=app.state.upload_metrics,
        )
        app.state.upload_service = service
        app.state.upload_settings = limits
        async with sweeper_running(service, interval_seconds=limits.sweep_interval_seconds):
            yield

    app = create_service_app(
        service=SERVICE,
        settings=settings,
        routers=[router],
        lifespan=adapters_lifespan(
            service=SERVICE,
            settings=settings,
            adapters=adapters,
            needs=("documents", "objects", "bus"),
            then=upload_state,
        ),
        version=package_version("avc-upload"),
    )
    app.state.upload_metrics = UploadMetrics(metrics_registry(app), service=SERVICE)
    return app
