"""The media service's ASGI app: videos, embed metadata and playback (encoding runs in the
separate `media-worker` component, `avc_media.worker`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.logging import get_logger
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import Lifespan, create_service_app, package_version
from avc_media.config import MediaSettings
from avc_media.embed_routes import router as embed_router
from avc_media.player.routes import router as player_router
from avc_media.presets.routes import router as presets_router
from avc_media.repository import ensure_indexes
from avc_media.routes import internal_router, router
from avc_media.secrets_store import resolve_playback_secret
from avc_media.service import MediaContext
from avc_media.subtitles.routes import router as subtitles_router

SERVICE: Final = "media"

log = get_logger(__name__)


def _media_lifespan(
    settings: Settings, media_settings: MediaSettings, *, embedded: bool
) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        secret, path = resolve_playback_secret(media_settings, settings.resolved_data_dir)
        if path is not None and not embedded:
            log.warning(
                "playback_secret_from_data_dir",
                path=str(path),
                hint="set AVC_MEDIA_PLAYBACK_SECRET when several media replicas run",
            )
        await ensure_indexes(app.state.documents)
        app.state.media = MediaContext.build(
            settings=media_settings,
            secret=secret,
            db=app.state.documents,
            objects=app.state.objects,
            bus=app.state.bus,
        )
        yield

    return lifespan


def create_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    media_settings: MediaSettings | None = None,
) -> FastAPI:
    """Returns the media app (`media_settings` default to the `AVC_*` environment)."""
    settings = settings if settings is not None else Settings()
    media_settings = media_settings if media_settings is not None else MediaSettings()
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        routers=[
            router,
            subtitles_router,
            presets_router,
            embed_router,
            player_router,
            internal_router,
        ],
        lifespan=adapters_lifespan(
            service=SERVICE,
            settings=settings,
            adapters=adapters,
            needs=("documents", "objects", "bus"),
            then=_media_lifespan(settings, media_settings, embedded=adapters is not None),
        ),
        version=package_version("avc-media"),
    )
    app.state.media_settings = media_settings
    return app
