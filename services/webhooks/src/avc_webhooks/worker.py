"""`webhooks-worker`: the component that sends webhook deliveries (`serve --target
webhooks-worker`; embedded in `--target all`). It serves only /healthz, /readyz and /metrics;
its lifespan polls the webhooks service's database for due deliveries (`avc_common.periodic`
driving `DeliveryWorker.poll_pass`) and, on the way out, waits for the attempts under way."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final, Literal

from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.periodic import periodic
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import Lifespan, create_service_app, metrics_registry, package_version
from avc_webhooks.config import WebhookSettings
from avc_webhooks.dispatcher import DeliveryWorker, WorkerMetrics
from avc_webhooks.repository import WebhookRepository
from avc_webhooks.sender import Sender
from avc_webhooks.ssrf import Resolver, client_ssl_context

COMPONENT: Final = "webhooks-worker"
DATABASE: Final[Literal["webhooks"]] = "webhooks"
# Several workers started together do not poll in lockstep.
POLL_JITTER: Final = 0.1


def _worker_lifespan(settings: WebhookSettings, resolver: Resolver | None = None) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        repository = WebhookRepository(app.state.documents)
        await repository.ensure_indexes()
        version = package_version("avc-webhooks")
        sender = Sender(
            policy=settings.url_policy(resolver),
            ssl_context=client_ssl_context(settings.ca_file),
            settings=settings,
            user_agent=f"AVCaption-Webhooks/{version}",
        )
        worker = DeliveryWorker(
            repository=repository,
            sender=sender,
            settings=settings,
            metrics=WorkerMetrics(metrics_registry(app)),
        )
        app.state.delivery_worker = worker
        try:
            async with periodic(
                "webhooks-sender",
                settings.poll_interval_seconds,
                worker.poll_pass,
                jitter=POLL_JITTER,
            ) as poll:
                app.state.delivery_poll = poll
                yield
        finally:
            await worker.drain()

    return lifespan


def create_worker_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    webhook_settings: WebhookSettings | None = None,
    resolver: Resolver | None = None,
) -> FastAPI:
    """Returns the webhooks worker app (`webhook_settings` default to `AVC_WEBHOOKS_*`;
    `resolver` replaces the system DNS resolver, for tests)."""
    settings = settings if settings is not None else Settings()
    webhook_settings = webhook_settings if webhook_settings is not None else WebhookSettings()
    app = create_service_app(
        service=COMPONENT,
        settings=settings,
        lifespan=adapters_lifespan(
            service=DATABASE,
            settings=settings,
            adapters=adapters,
            needs=["documents"],
            then=_worker_lifespan(webhook_settings, resolver),
        ),
        title="AVCaption webhooks worker",
        version=package_version("avc-webhooks"),
    )
    app.state.webhook_settings = webhook_settings
    return app
