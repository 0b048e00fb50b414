"""Webhook endpoints (the API), and turning public events into deliveries (the consumer)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from avc_common.events import PUBLIC_EVENT_TYPES, Event
from avc_common.ids import new_id
from avc_common.logging import get_logger
from avc_common.timeutil import utcnow
from avc_webhooks.config import WebhookSettings
from avc_webhooks.errors import (
    DeliveryInProgress,
    DeliveryNotFound,
    InvalidWebhookUrl,
    WebhookDisabled,
    WebhookLimitReached,
    WebhookNotFound,
)
from avc_webhooks.repository import (
    KEEP,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointChanges,
    Page,
    WebhookRepository,
)
from avc_webhooks.signing import new_secret
from avc_webhooks.ssrf import UrlPolicy, UrlRefused

log = get_logger(__name__)

DISABLED_BY_USER = "The webhook was disabled."


def webhook_body(event: Event) -> str:
    """Returns the exact JSON text delivered (and signed) for `event`."""
    return json.dumps(event.webhook_body(), separators=(",", ":"), ensure_ascii=False)


class WebhookService:
    def __init__(
        self,
        *,
        repository: WebhookRepository,
        policy: UrlPolicy,
        settings: WebhookSettings,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._repo = repository
        self._policy = policy
        self._settings = settings
        self._created = (
            Counter(
                "avc_webhook_deliveries_created",
                "Deliveries created from public events, by event type.",
                ["event_type"],
                registry=registry,
            )
            if registry is not None
            else None
        )

    # -- endpoints ------------------------------------------------------------------------

    async def _checked_url(self, url: str) -> str:
        try:
            await self._policy.check(url)
        except UrlRefused as exc:
            raise InvalidWebhookUrl(exc.message, details={"reason": exc.reason}) from None
        return url

    async def create_endpoint(
        self,
        *,
        account_id: str,
        url: str,
        events: Sequence[str] | None,
        description: str | None,
    ) -> Endpoint:
        """Returns the new endpoint, with its secret (the only time the API shows it)."""
        if await self._repo.count_endpoints(account_id=account_id) >= (
            self._settings.max_endpoints_per_account
        ):
            raise WebhookLimitReached(
                f"An account may have {self._settings.max_endpoints_per_account} webhooks."
            )
        now = utcnow()
        endpoint = Endpoint(
            id=new_id("whk"),
            account_id=account_id,
            url=await self._checked_url(url),
            events=list(events) if events is not None else list(PUBLIC_EVENT_TYPES),
            enabled=True,
            description=description,
            secret=new_secret(),
            created_at=now,
            updated_at=now,
        )
        await self._repo.insert_endpoint(endpoint)
        log.info("webhook_created", webhook_id=endpoint.id)
        return endpoint

    async def list_endpoints(self, *, account_id: str, page: int, per_page: int) -> Page[Endpoint]:
        """Returns one page of the account's endpoints, newest first."""
        return await self._repo.list_endpoints(account_id=account_id, page=page, per_page=per_page)

    async def get_endpoint(self, *, account_id: str, endpoint_id: str) -> Endpoint:
        """Returns the account's endpoint; raises WebhookNotFound (also for other accounts')."""
        endpoint = await self._repo.get_endpoint(account_id=account_id, endpoint_id=endpoint_id)
        if endpoint is None:
            raise WebhookNotFound()
        return endpoint

    async def update_endpoint(
        self, *, account_id: str, endpoint_id: str, changes: EndpointChanges
    ) -> Endpoint:
        """Returns the endpoint after applying `changes` (any of url, events, enabled,
        description). Enabling it again clears why it was disabled and its failure run."""
        current = await self.get_endpoint(account_id=account_id, endpoint_id=endpoint_id)
        if changes.url is not KEEP and changes.url != current.url:
            await self._checked_url(changes.url)
        updated = await self._repo.update_endpoint(
            account_id=account_id, endpoint_id=endpoint_id, changes=changes
        )
        if updated is None:
            raise WebhookNotFound()
        if current.enabled and not updated.enabled:
            await self._repo.fail_pending(
                endpoint_id=endpoint_id, reason=DISABLED_BY_USER, now=changes.updated_at
            )
        return updated

    async def delete_endpoint(self, *, account_id: str, endpoint_id: str) -> None:
        """Deletes the endpoint and its deliveries; raises WebhookNotFound."""
        if not await self._repo.delete_endpoint(account_id=account_id, endpoint_id=endpoint_id):
            raise WebhookNotFound()
        log.info("webhook_deleted", webhook_id=endpoint_id)

    # -- deliveries -----------------------------------------------------------------------

    async def list_deliveries(
        self, *, account_id: str, endpoint_id: str, page: int, per_page: int
    ) -> Page[Delivery]:
        """Returns one page of the endpoint's deliveries, newest first."""
        await self.get_endpoint(account_id=account_id, endpoint_id=endpoint_id)
        return await self._repo.list_deliveries(
            account_id=account_id, endpoint_id=endpoint_id, page=page, per_page=per_page
        )

    async def retry_delivery(self, *, account_id: str, delivery_id: str) -> Delivery:
        """Returns the delivery made due now (its retry schedule starts over)."""
        delivery = await self._repo.get_delivery(account_id=account_id, delivery_id=delivery_id)
        if delivery is None:
            raise DeliveryNotFound()
        endpoint = await self._repo.get_endpoint(
            account_id=account_id, endpoint_id=delivery.endpoint_id
        )
        if endpoint is None:
            raise DeliveryNotFound()
        if not endpoint.enabled:
            raise WebhookDisabled()
        retried = await self._repo.request_retry(
            account_id=account_id, delivery_id=delivery_id, now=utcnow()
        )
        if retried is None:
            raise DeliveryInProgress()
        log.info("webhook_delivery_retry_requested", delivery_id=delivery_id)
        return retried

    async def fan_out_handler(self, event: Event) -> None:
        """Bus handler (see `fan_out`)."""
        await self.fan_out(event)

    async def fan_out(self, event: Event) -> int:
        """Bus handler: returns how many deliveries `event` newly got — one per enabled endpoint
        of its account subscribed to its type; a redelivered event gets none (unique index)."""
        if event.type not in PUBLIC_EVENT_TYPES:
            return 0
        endpoints = await self._repo.subscribed_endpoints(
            account_id=event.account_id, event_type=event.type
        )
        if not endpoints:
            return 0
        body = webhook_body(event)
        created = 0
        for endpoint in endpoints:
            now = utcnow()
            delivery = Delivery(
                id=new_id("dlv"),
                account_id=event.account_id,
                endpoint_id=endpoint.id,
                event_id=event.id,
                event_type=event.type,
                body=body,
                status=DeliveryStatus.PENDING,
                created_at=now,
                updated_at=now,
                next_attempt_at=now,
            )
            if await self._repo.insert_delivery(delivery):
                created += 1
                if self._created is not None:
                    self._created.labels(event.type).inc()
        if created:
            log.info("webhook_deliveries_created", event_id=event.id, count=created)
        return created
