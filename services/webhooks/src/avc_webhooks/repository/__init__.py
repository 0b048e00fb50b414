"""Storage of webhook endpoints and deliveries: typed records (`records`) and the repository
that reads and writes them (`store`). Nothing outside this package knows a field name or a query
operator."""

from avc_webhooks.repository.records import (
    KEEP,
    NO_LEASE,
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointChanges,
    Page,
)
from avc_webhooks.repository.store import WebhookRepository

__all__ = [
    "KEEP",
    "NO_LEASE",
    "Attempt",
    "AttemptOutcome",
    "Delivery",
    "DeliveryStatus",
    "Endpoint",
    "EndpointChanges",
    "Page",
    "WebhookRepository",
]
