"""The webhooks service's ASGI app: webhook endpoints, deliveries and their attempts. Its
lifespan consumes the public events and records one delivery per subscribed endpoint; the
`webhooks-worker` component (`avc_webhooks.worker`) sends them."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import create_service_app, package_version
from avc_webhooks.config import WebhookSettings
from avc_webhooks.consumer import webhooks_lifespan
from avc_webhooks.routes import router
from avc_webhooks.ssrf import Resolver

SERVICE: Final = "webhooks"


def create_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    webhook_settings: WebhookSettings | None = None,
    resolver: Resolver | None = None,
) -> FastAPI:
    """Returns the webhooks app (`webhook_settings` default to the `AVC_WEBHOOKS_*`
    environment; `resolver` replaces the system DNS resolver, for tests)."""
    settings = settings if settings is not None else Settings()
    webhook_settings = webhook_settings if webhook_settings is not None else WebhookSettings()
    app = create_service_app(
        service=SERVICE,
        settings=settings,
        routers=[router],
        lifespan=adapters_lifespan(
            service=SERVICE,
            settings=settings,
            adapters=adapters,
            needs=("documents", "bus"),
            then=webhooks_lifespan(webhook_settings, resolver),
        ),
        version=package_version("avc-webhooks"),
    )
    app.state.webhook_settings = webhook_settings
    return app
