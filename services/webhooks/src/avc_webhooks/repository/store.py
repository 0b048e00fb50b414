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

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from avc_common.documents import DocumentDatabase, DuplicateKey
from avc_webhooks.repository.records import (
    NO_LEASE,
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    Endpoint,
    EndpointChanges,
    Page,
)

ENDPOINTS: Final = "endpoints"
DELIVERIES: Final = "deliveries"
NEWEST_FIRST: Final = [("created_at", -1), ("_id", -1)]


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
        self, *, account_id: str, endpoint_id: str, changes: EndpointChanges
    ) -> Endpoint | None:
        """Returns the endpoint after `changes`; None when the account has no such endpoint."""
        doc = await self._endpoints.find_one_and_update(
            {"_id": endpoint_id, "account_id": account_id}, {"$set": changes.to_fields()}
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
                    "status": DeliveryStatus.PENDING.value,
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
        due = {
            "status": DeliveryStatus.PENDING.value,
            "next_attempt_at": {"$lte": now},
            "lease_until": {"$lte": now},
        }
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
        outcome: AttemptOutcome,
        attempt: Attempt | None,
    ) -> bool:
        """Returns whether the result was stored (False: the lease was lost to another worker).
        `attempt`: the attempt made (logged and counted); None when given up without one.
        Releases the lease in the same write."""
        update: dict[str, Any] = {
            "$set": {**outcome.to_fields(), "lease_until": NO_LEASE, "lease_token": None},
        }
        if attempt is not None:
            update["$push"] = {"attempt_log": attempt.to_doc()}
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
            {
                "endpoint_id": endpoint_id,
                "status": DeliveryStatus.PENDING.value,
                "lease_until": {"$lte": now},
            },
            {
                "$set": {
                    "status": DeliveryStatus.FAILED.value,
                    "next_attempt_at": None,
                    "last_error": reason,
                }
            },
        )
        return result.modified_count

    async def deliveries_for_event(self, event_id: str) -> Sequence[Delivery]:
        """Returns every delivery of one event (tests and operators)."""
        docs = await self._deliveries.find({"event_id": event_id})
        return [Delivery.from_doc(d) for d in docs]
