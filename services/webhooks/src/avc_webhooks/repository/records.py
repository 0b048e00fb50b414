"""The typed records of the webhooks database and their document mapping: the one place that
knows the field names (`store` builds its filters from them too)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum, StrEnum
from typing import Any, Final, Generic, Literal, TypeVar

from avc_common.timeutil import ensure_utc, to_rfc3339

# `lease_until` of a delivery nobody holds: long past, so `$lte now` matches it.
NO_LEASE: Final = datetime(1970, 1, 1, tzinfo=UTC)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    """An attempt is due at `next_attempt_at`."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Given up: the schedule ran out, or the endpoint was disabled or deleted."""


class Keep(Enum):
    """Marks a field of `EndpointChanges` that stays as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP

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
    status: DeliveryStatus
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
    attempt_log: list[Attempt] = field(default_factory=list)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Delivery:
        return cls(
            id=doc["_id"],
            account_id=doc["account_id"],
            endpoint_id=doc["endpoint_id"],
            event_id=doc["event_id"],
            event_type=doc["event_type"],
            body=doc["body"],
            status=DeliveryStatus(doc["status"]),
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
            attempt_log=[Attempt.from_doc(entry) for entry in doc.get("attempt_log") or ()],
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "account_id": self.account_id,
            "endpoint_id": self.endpoint_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "body": self.body,
            "status": self.status.value,
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
            "attempt_log": [attempt.to_doc() for attempt in self.attempt_log],
        }


@dataclass(frozen=True)
class Attempt:
    """One entry of a delivery's attempt log."""

    attempt: int
    started_at: datetime
    duration_ms: int
    outcome: str
    status_code: int | None
    error: str | None
    response_body: str | None
    retry_after_seconds: float | None = None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Attempt:
        started = doc["started_at"]
        return cls(
            attempt=int(doc["attempt"]),
            started_at=(
                datetime.fromisoformat(started) if isinstance(started, str) else ensure_utc(started)
            ),
            duration_ms=int(doc["duration_ms"]),
            outcome=str(doc["outcome"]),
            status_code=doc.get("status_code"),
            error=doc.get("error"),
            response_body=doc.get("response_body"),
            retry_after_seconds=doc.get("retry_after_seconds"),
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "started_at": to_rfc3339(self.started_at),
            "duration_ms": self.duration_ms,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "error": self.error,
            "response_body": self.response_body,
            "retry_after_seconds": self.retry_after_seconds,
        }


@dataclass(frozen=True)
class AttemptOutcome:
    """What an attempt (or giving up without one) changes on its delivery."""

    status: DeliveryStatus
    updated_at: datetime
    next_attempt_at: datetime | None = None
    last_status_code: int | Literal[Keep.KEEP] | None = KEEP
    """The receiver's answer (None: no answer); KEEP when no attempt was made."""
    last_error: str | None = None
    delivered_at: datetime | None = None
    auto_failures: int | None = None
    """The new count of failures since the schedule (re)started; None leaves it as it is."""

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "status": self.status.value,
            "updated_at": self.updated_at,
            "next_attempt_at": self.next_attempt_at,
            "last_error": self.last_error,
        }
        if self.last_status_code is not KEEP:
            fields["last_status_code"] = self.last_status_code
        if self.delivered_at is not None:
            fields["delivered_at"] = self.delivered_at
        if self.auto_failures is not None:
            fields["auto_failures"] = self.auto_failures
        return fields


@dataclass(frozen=True)
class EndpointChanges:
    """A change to an endpoint: each field is a new value or `KEEP`."""

    updated_at: datetime
    url: str | Literal[Keep.KEEP] = KEEP
    events: list[str] | Literal[Keep.KEEP] = KEEP
    enabled: bool | Literal[Keep.KEEP] = KEEP
    description: str | Literal[Keep.KEEP] | None = KEEP

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"updated_at": self.updated_at}
        if self.url is not KEEP:
            fields["url"] = self.url
        if self.events is not KEEP:
            fields["events"] = list(self.events)
        if self.description is not KEEP:
            fields["description"] = self.description
        if self.enabled is not KEEP:
            fields["enabled"] = self.enabled
            if self.enabled:  # enabled again: why it was disabled and its failure run end
                fields["disabled_reason"] = None
                fields["failing_since"] = None
        return fields
