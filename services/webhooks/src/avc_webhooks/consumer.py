"""The webhooks app's lifespan part: the service object and the event consumer (queue
`webhooks.events`, the five public event types) that turns events into deliveries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from fastapi import FastAPI

from avc_common.events import PUBLIC_EVENT_TYPES
from avc_common.web import Lifespan, metrics_registry
from avc_webhooks.config import WebhookSettings
from avc_webhooks.repository import WebhookRepository
from avc_webhooks.service import WebhookService
from avc_webhooks.ssrf import Resolver, UrlPolicy

QUEUE: Final = "webhooks.events"
ROUTING_KEYS: Final = tuple(PUBLIC_EVENT_TYPES)


def url_policy(settings: WebhookSettings, resolver: Resolver | None = None) -> UrlPolicy:
    """Returns the SSRF policy the settings describe."""
    return UrlPolicy(
        allow_insecure=settings.allow_insecure,
        allowed_networks=settings.networks,
        resolver=resolver,
        dns_timeout=settings.dns_timeout_seconds,
    )


def webhooks_lifespan(settings: WebhookSettings, resolver: Resolver | None = None) -> Lifespan:
    """Returns the lifespan part that builds the service and consumes the public events."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        repository = WebhookRepository(app.state.documents)
        await repository.ensure_indexes()
        service = WebhookService(
            repository=repository,
            policy=url_policy(settings, resolver),
            settings=settings,
            registry=metrics_registry(app),
        )
        app.state.webhook_service = service

        subscription = await app.state.bus.subscribe(
            QUEUE, ROUTING_KEYS, service.fan_out_handler, prefetch=settings.consumer_prefetch
        )
        try:
            yield
        finally:
            await subscription.cancel()

    return lifespan
