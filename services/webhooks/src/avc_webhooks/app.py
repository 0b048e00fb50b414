"""The webhooks service's ASGI app: webhook endpoints, deliveries and their attempts."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import create_service_app, package_version

SERVICE: Final = "webhooks"


def create_app(settings: Settings | None = None, *, adapters: Adapters | None = None) -> FastAPI:
    """Returns the webhooks app; its routes, state and readiness checks come with later issues."""
    settings = settings if settings is not None else Settings()
    return create_service_app(
        service=SERVICE,
        settings=settings,
        lifespan=adapters_lifespan(
            service=SERVICE, settings=settings, adapters=adapters, needs=("documents", "bus")
        ),
        version=package_version("avc-webhooks"),
    )
