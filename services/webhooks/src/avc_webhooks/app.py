"""The webhooks service's ASGI app: webhook endpoints, deliveries and their attempts.

Its lifespan builds the service and consumes the public events (queue `webhooks.events`, the
five public event types; the handler is `WebhookService.fan_out_handler`), recording one
delivery per subscribed endpoint; the `webhooks-worker` component (`avc_webhooks.worker`) sends
them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.events import PUBLIC_EVENT_TYPES
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import Lifespan, create_service_app, metrics_registry, package_version
from avc_common.web.health import add_consumer_readiness_check
from avc_webhooks.config import WebhookSettings
from avc_webhooks.repository import WebhookRepository
from avc_webhooks.routes import router
from avc_webhooks.service import WebhookService
from avc_webhooks.ssrf import Resolver

SERVICE: Final = "webhooks"
QUEUE: Final = "webhooks.events"
ROUTING_KEYS: Final = tuple(PUBLIC_EVENT_TYPES)


def _webhooks_lifespan(settings: WebhookSettings, resolver: Resolver | None) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        repository = WebhookRepository(app.state.documents)
        await repository.ensure_indexes()
        service = WebhookService(
            repository=repository,
            policy=settings.url_policy(resolver),
            settings=settings,
            registry=metrics_registry(app),
        )
        app.state.webhook_service = service
        subscription = await app.state.bus.subscribe(
            QUEUE, ROUTING_KEYS, service.fan_out_handler, prefetch=settings.consumer_prefetch
        )
        add_consumer_readiness_check(app, QUEUE, subscription)
        try:
            yield
        finally:
            await subscription.cancel()

    return lifespan


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
            then=_webhooks_lifespan(webhook_settings, resolver),
        ),
        version=package_version("avc-webhooks"),
    )
    app.state.webhook_settings = webhook_settings
    return app
