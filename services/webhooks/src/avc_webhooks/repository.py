"""Storage of webhook endpoints and deliveries in the webhooks service's own database.

- `endpoints`: one per webhook endpoint, with its signing secret. The secret is stored as
  given out (not hashed): every attempt signs with it, so it must be readable. Protect the
  database accordingly (MongoDB encryption at rest / the data dir's file permissions).
- `deliveries`: one per (event, endpoint) — a unique index on `(event_id, endpoint_id)` makes a
  redelivered event never create a second one —, holding the exact body to sign, the schedule
  (`status`, `next_attempt_at`, `auto_failures`), a lease (`lease_until`, `lease_token`) taken
  by the worker that sends it, and the log of every attempt (`attempt_log`).

API queries are scoped to the caller's account here; the worker reads by delivery.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, TypeVar

from avc_common.documents import DocumentDatabase, DuplicateKey
from avc_common.timeutil import ensure_utc

ENDPOINTS: Final = "endpoints"
DELIVERIES: Final = "deliveries"
NEWEST_FIRST: Final = [("created_at", -1), ("_id", -1)]
# `lease_until` of a delivery nobody holds: long past, so `$lte now` matches it.
NO_LEASE: Final = datetime(1970, 1, 1, tzinfo=UTC)

T = TypeVar("T")


def _time(value: Any) -> datetime | None:
    return None if value is None else ensure_utc(value)


@dataclass(frozen=True)
class Page(Generic[T]):
    data: list[T]
    page: int
    per_page: int
    total: int

    @property
    def total_pages(self) -> int:
        return math.ceil(self.total / self.per_page)


@dataclass(frozen=True)
class Endpoint:
    id: str
    account_id: str
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    secret: str
    created_at: datetime
    updated_at: datetime
    failing_since: datetime | None = None
    disabled_reason: str | None = None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Endpoint:
        return cls(
            id=doc["_id"],
            account_id=doc["account_id"],
            url=doc["url"],
            events=list(doc.get("events") or ()),
            enabled=bool(doc.get("enabled", True)),
            description=doc.get("description"),
            secret=doc["secret"],
            created_at=ensure_utc(doc["created_at"]),
            updated_at=ensure_utc(doc.get("updated_at") or doc["created_at"]),
            failing_since=_time(doc.get("failing_since")),
            disabled_reason=doc.get("disabled_reason"),
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "account_id": self.account_id,
            "url": self.url,
            "events": list(self.events),
            "enabled": self.enabled,
            "description": self.description,
            "secret": self.secret,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "failing_since": self.failing_since,
            "disabled_reason": self.disabled_reason,
        }


@dataclass(frozen=True)
class Delivery:
    id: str
    account_id: str
    endpoint_id: str
    event_id: str
    event_type: str
    body: str
    """The exact JSON text sent (and signed) on every attempt."""
    status: str
    """`pending` (an attempt is due at `next_attempt_at`), `succeeded` or `failed`."""
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None
    attempts: int = 0
    auto_failures: int = 0
    """Failed attempts since the schedule (re)started: the index into the retry schedule."""
    last_status_code: int | None = None
    last_error: str | None = None
    delivered_at: datetime | None = None
    lease_until: datetime = NO_LEASE
    lease_token: str | None = None
    attempt_log: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Delivery:
        return cls(
            id=doc["_id"],
            account_id=doc["account_id"],
            endpoint_id=doc["endpoint_id"],
            event_id=doc["event_id"],
            event_type=doc["event_type"],
            body=doc["body"],
            status=doc["status"],
            created_at=ensure_utc(doc["created_at"]),
            updated_at=ensure_utc(doc.get("updated_at") or doc["created_at"]),
            next_attempt_at=_time(doc.get("next_attempt_at")),
            attempts=int(doc.get("attempts", 0)),
            auto_failures=int(doc.get("auto_failures", 0)),
            last_status_code=doc.get("last_status_code"),
            last_error=doc.get("last_error"),
            delivered_at=_time(doc.get("delivered_at")),
            lease_until=_time(doc.get("lease_until")) or NO_LEASE,
            lease_token=doc.get("lease_token"),
            attempt_log=[dict(entry) for entry in doc.get("attempt_log") or ()],
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "account_id": self.account_id,
            "endpoint_id": self.endpoint_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "body": self.body,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "next_attempt_at": self.next_attempt_at,
            "attempts": self.attempts,
            "auto_failures": self.auto_failures,
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "delivered_at": self.delivered_at,
            "lease_until": self.lease_until,
            "lease_token": self.lease_token,
            "attempt_log": list(self.attempt_log),
        }


class WebhookRepository:
    def __init__(self, db: DocumentDatabase) -> None:
        self._endpoints = db.collection(ENDPOINTS)
        self._deliveries = db.collection(DELIVERIES)

    async def ensure_indexes(self) -> None:
        """Creates the indexes (a no-op when they exist)."""
        await self._endpoints.create_index([("account_id", 1), ("created_at", -1)])
        await self._deliveries.create_index(
            [("event_id", 1), ("endpoint_id", 1)], unique=True, name="one_per_event_endpoint"
        )
        await self._deliveries.create_index([("status", 1), ("next_attempt_at", 1)])
        await self._deliveries.create_index([("endpoint_id", 1), ("created_at", -1)])

    # -- endpoints (API: scoped to the account) --------------------------------------------

    async def insert_endpoint(self, endpoint: Endpoint) -> None:
        await self._endpoints.insert_one(endpoint.to_doc())

    async def count_endpoints(self, *, account_id: str) -> int:
        return await self._endpoints.count({"account_id": account_id})

    async def list_endpoints(self, *, account_id: str, page: int, per_page: int) -> Page[Endpoint]:
        """Returns one page of the account's endpoints, newest first."""
        query = {"account_id": account_id}
        docs = await self._endpoints.find(
            query, sort=NEWEST_FIRST, skip=(page - 1) * per_page, limit=per_page
        )
        total = await self._endpoints.count(query)
        return Page([Endpoint.from_doc(d) for d in docs], page, per_page, total)

    async def get_endpoint(self, *, account_id: str, endpoint_id: str) -> Endpoint | None:
        doc = await self._endpoints.find_one({"_id": endpoint_id, "account_id": account_id})
        return None if doc is None else Endpoint.from_doc(doc)

    async def update_endpoint(
        self, *, account_id: str, endpoint_id: str, fields: Mapping[str, Any]
    ) -> Endpoint | None:
        doc = await self._endpoints.find_one_and_update(
            {"_id": endpoint_id, "account_id": account_id}, {"$set": dict(fields)}
        )
        return None if doc is None else Endpoint.from_doc(doc)

    async def delete_endpoint(self, *, account_id: str, endpoint_id: str) -> bool:
        """Returns whether the endpoint existed; its deliveries go with it."""
        deleted = await self._endpoints.delete_one({"_id": endpoint_id, "account_id": account_id})
        if deleted:
            await self._deliveries.delete_many(
                {"endpoint_id": endpoint_id, "account_id": account_id}
            )
        return bool(deleted)

    async def subscribed_endpoints(self, *, account_id: str, event_type: str) -> list[Endpoint]:
        """Returns the account's enabled endpoints subscribed to `event_type`."""
        docs = await self._endpoints.find(
            {"account_id": account_id, "enabled": True, "events": event_type}
        )
        return [Endpoint.from_doc(d) for d in docs]

    # -- endpoint health (worker) ----------------------------------------------------------

    async def endpoint_succeeded(self, endpoint_id: str) -> None:
        """Ends the endpoint's run of consecutive failures."""
        await self._endpoints.update_one(
            {"_id": endpoint_id, "failing_since": {"$ne": None}}, {"$set": {"failing_since": None}}
        )

    async def endpoint_failed(self, endpoint_id: str, *, now: datetime) -> Endpoint | None:
        """Returns the endpoint after recording a failure (`failing_since` set on the first)."""
        doc = await self._endpoints.find_one_and_update(
            {"_id": endpoint_id, "failing_since": None}, {"$set": {"failing_since": now}}
        )
        if doc is None:
            doc = await self._endpoints.find_one({"_id": endpoint_id})
        return None if doc is None else Endpoint.from_doc(doc)

    async def disable_endpoint(self, endpoint_id: str, *, reason: str, now: datetime) -> bool:
        """Returns whether this call disabled the endpoint (False: it was already disabled)."""
        result = await self._endpoints.update_one(
            {"_id": endpoint_id, "enabled": True},
            {"$set": {"enabled": False, "disabled_reason": reason, "updated_at": now}},
        )
        return result.modified_count > 0

    # -- deliveries ------------------------------------------------------------------------

    async def insert_delivery(self, delivery: Delivery) -> bool:
        """Returns False when the event already has a delivery for that endpoint."""
        try:
            await self._deliveries.insert_one(delivery.to_doc())
        except DuplicateKey:
            return False
        return True

    async def list_deliveries(
        self, *, account_id: str, endpoint_id: str, page: int, per_page: int
    ) -> Page[Delivery]:
        """Returns one page of the endpoint's deliveries, newest first."""
        query = {"account_id": account_id, "endpoint_id": endpoint_id}
        docs = await self._deliveries.find(
            query, sort=NEWEST_FIRST, skip=(page - 1) * per_page, limit=per_page
        )
        total = await self._deliveries.count(query)
        return Page([Delivery.from_doc(d) for d in docs], page, per_page, total)

    async def get_delivery(self, *, account_id: str, delivery_id: str) -> Delivery | None:
        doc = await self._deliveries.find_one({"_id": delivery_id, "account_id": account_id})
        return None if doc is None else Delivery.from_doc(doc)

    async def request_retry(
        self, *, account_id: str, delivery_id: str, now: datetime
    ) -> Delivery | None:
        """Returns the delivery made due now with a fresh schedule; None when it does not exist
        or a worker holds it right now."""
        doc = await self._deliveries.find_one_and_update(
            {"_id": delivery_id, "account_id": account_id, "lease_until": {"$lte": now}},
            {
                "$set": {
                    "status": "pending",
                    "next_attempt_at": now,
                    "auto_failures": 0,
                    "updated_at": now,
                }
            },
        )
        return None if doc is None else Delivery.from_doc(doc)

    async def claim_due(self, *, now: datetime, lease: timedelta, token: str) -> Delivery | None:
        """Returns the most overdue delivery, leased to `token` (atomic: one worker gets it).

        A lease that ran out (its worker died mid-attempt) is claimable again, since the
        delivery's `next_attempt_at` is still in the past."""
        due = {"status": "pending", "next_attempt_at": {"$lte": now}, "lease_until": {"$lte": now}}
        # A read first: an idle worker polling must not take the database's write lock.
        if await self._deliveries.find_one(due) is None:
            return None
        doc = await self._deliveries.find_one_and_update(
            due,
            {"$set": {"lease_until": now + lease, "lease_token": token}},
            sort=[("next_attempt_at", 1)],
        )
        return None if doc is None else Delivery.from_doc(doc)

    async def finish_attempt(
        self,
        delivery_id: str,
        *,
        token: str,
        fields: Mapping[str, Any],
        attempt: Mapping[str, Any] | None,
        count_attempt: bool,
    ) -> bool:
        """Returns whether the result was stored (False: the lease was lost to another worker).
        Releases the lease in the same write."""
        update: dict[str, Any] = {
            "$set": {**fields, "lease_until": NO_LEASE, "lease_token": None},
        }
        if attempt is not None:
            update["$push"] = {"attempt_log": dict(attempt)}
        if count_attempt:
            update["$inc"] = {"attempts": 1}
        result = await self._deliveries.update_one(
            {"_id": delivery_id, "lease_token": token}, update
        )
        return result.matched_count > 0

    async def release(self, delivery_id: str, *, token: str) -> None:
        """Gives a claimed delivery back without an attempt (worker shutting down)."""
        await self._deliveries.update_one(
            {"_id": delivery_id, "lease_token": token},
            {"$set": {"lease_until": NO_LEASE, "lease_token": None}},
        )

    async def fail_pending(self, *, endpoint_id: str, reason: str, now: datetime) -> int:
        """Returns how many pending deliveries of a disabled endpoint were given up."""
        result = await self._deliveries.update_many(
            {"endpoint_id": endpoint_id, "status": "pending", "lease_until": {"$lte": now}},
            {"$set": {"status": "failed", "next_attempt_at": None, "last_error": reason}},
        )
        return result.modified_count

    async def deliveries_for_event(self, event_id: str) -> Sequence[Delivery]:
        """Returns every delivery of one event (tests and operators)."""
        docs = await self._deliveries.find({"event_id": event_id})
        return [Delivery.from_doc(d) for d in docs]
