"""Request and response bodies of the webhooks endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from avc_common.events import PUBLIC_EVENT_TYPES, PublicEventType
from avc_webhooks.repository import KEEP, EndpointChanges

MAX_DESCRIPTION: Final = 500
MAX_URL: Final = 2048

EventList = Annotated[
    list[PublicEventType],
    Field(
        min_length=1,
        max_length=len(PUBLIC_EVENT_TYPES) * 4,
        description="Event types to receive; all five when left out.",
    ),
]


def _canonical(events: list[str]) -> list[str]:
    """Returns the events without duplicates, in the contract's order."""
    return [e for e in PUBLIC_EVENT_TYPES if e in set(events)]


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=1, max_length=MAX_URL)
    events: EventList | None = None
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _canonical(value)


class EndpointUpdate(BaseModel):
    # Like video PUT: a misspelt field is an error, not a silent no-op.
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=1, max_length=MAX_URL)
    events: EventList | None = None
    enabled: StrictBool | None = None
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION)

    @field_validator("events")
    @classmethod
    def _events(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _canonical(value)

    @field_validator("url", "enabled", "events", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value

    def changes(self, now: datetime) -> EndpointChanges:
        """Returns the change this body asks for (fields left out are kept)."""
        given = self.model_fields_set
        return EndpointChanges(
            updated_at=now,
            url=self.url if "url" in given and self.url is not None else KEEP,
            events=list(self.events) if "events" in given and self.events is not None else KEEP,
            enabled=self.enabled if "enabled" in given and self.enabled is not None else KEEP,
            description=self.description if "description" in given else KEEP,
        )


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    enabled: bool
    description: str | None
    disabled_reason: str | None = Field(
        description="Why the service disabled it: `gone` (410) or `failing` (5 days of failures)."
    )
    created_at: str
    updated_at: str


class EndpointCreated(EndpointOut):
    secret: str = Field(description="`whsec_…`: the signing secret, shown this once.")


class EndpointPage(BaseModel):
    data: list[EndpointOut]
    page: int
    per_page: int
    total: int
    total_pages: int


class AttemptOut(BaseModel):
    attempt: int
    started_at: str
    duration_ms: int
    outcome: str = Field(
        description=(
            "`success`, `http_error`, `redirect`, `gone`, `timeout`, `network_error` or "
            "`blocked` (the URL failed the safety check: no connection was made)."
        )
    )
    status_code: int | None
    error: str | None
    response_body: str | None = Field(description="The start of the response (truncated).")
    retry_after_seconds: float | None = None


class DeliveryOut(BaseModel):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str = Field(description="`pending`, `succeeded` or `failed`.")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: str | None
    created_at: str
    updated_at: str
    delivered_at: str | None
    attempt_log: list[AttemptOut]


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    page: int
    per_page: int
    total: int
    total_pages: int
