"""The upload service's ASGI app: direct and chunked uploads, source objects."""

from __future__ import annotations

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.web import create_service_app, package_version

SERVICE = "upload"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Returns the upload app; its routes, state and readiness checks come with later issues."""
    return create_service_app(
        service=SERVICE,
        settings=settings if settings is not None else Settings(),
        version=package_version("avc-upload"),
    )
