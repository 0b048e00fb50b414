"""The media service's ASGI app: videos, subtitles, presets, renditions."""

from __future__ import annotations

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.web import create_service_app, package_version

SERVICE = "media"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Returns the media app; its routes, state and readiness checks come with later issues."""
    return create_service_app(
        service=SERVICE,
        settings=settings if settings is not None else Settings(),
        version=package_version("avc-media"),
    )
