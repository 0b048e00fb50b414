"""The event envelope and the typed payloads of every event on the bus.

Internal event names mirror the public webhook names. `video.deleted` and `video.viewed` are
internal only and are never sent to webhooks.

These models are the one definition of the event contract: the bus envelope, the webhook body
and the AsyncAPI document (`python -m avc_common.asyncapi`, committed as docs/asyncapi.yaml) all
come from them. Changes within a version are additive only (docs/events.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from avc_common.ids import derived_id, new_id
from avc_common.timeutil import to_rfc3339, utcnow

# Every field is in every serialized event (defaults included), so the JSON Schemas are of
# the serialized form and list every field as required.
_SCHEMA_CONFIG: Final = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)


class EventData(BaseModel):
    """Base of every typed payload. Unknown fields are kept: a consumer on an older release
    still reads what it knows of a payload a newer release added fields to."""

    model_config = ConfigDict(
        frozen=True, json_schema_serialization_defaults_required=True, extra="allow"
    )
    type: ClassVar[str]


class ErrorInfo(BaseModel):
    """Why a video failed."""

    model_config = _SCHEMA_CONFIG
    code: str = Field(
        description="Machine-readable reason: `invalid_media`, `duration_exceeded`, "
        "`resolution_exceeded`, `file_too_large`, `source_missing` or `encode_failed`."
    )
    message: str = Field(description="What happened and what to do, for people.")


class RenditionInfo(BaseModel):
    """One HLS rendition of an encoded video."""

    model_config = _SCHEMA_CONFIG
    name: str = Field(description="The rung, named after the short side: `1080p`, `360p`…")
    width: int = Field(description="Pixels.")
    height: int = Field(description="Pixels.")
    bitrate_kbps: int = Field(description="Average bitrate of the rendition, kbit/s.")


class VideoUploaded(EventData):
    """A video's source file is stored and registered; encoding comes next. Published by the
    upload service (and re-published with the same `id` by media when nobody picked it up)."""

    type: ClassVar[str] = "video.uploaded"
    video_id: str
    upload_id: str | None = Field(
        default=None, description="The chunked upload it came from; null for a direct upload."
    )
    filename: str = Field(description="The client's file name.")
    title: str | None = None
    size_bytes: int = Field(description="Size of the stored source file.")
    sha256: str | None = Field(
        default=None, description="Hex SHA-256 of the stored source file, when it was taken."
    )
    source_key: str = Field(description="Object-storage key of the source file.")


def video_uploaded_event_id(video_id: str) -> str:
    """Returns the one id `video.uploaded` of `video_id` carries, whoever publishes it (the
    upload service, or media re-driving a video nobody picked up): consumers then see one event."""
    return derived_id("evt", f"video.uploaded:{video_id}")


class VideoEncoded(EventData):
    """A video is encoded and ready to play. Published by the media worker."""

    type: ClassVar[str] = "video.encoded"
    video_id: str
    duration_seconds: float
    width: int = Field(description="Width of the source picture, pixels.")
    height: int = Field(description="Height of the source picture, pixels.")
    renditions: list[RenditionInfo] = Field(description="Largest first.")
    renditions_bytes: int = Field(ge=0, description="Bytes stored for every rendition together.")


class VideoFailed(EventData):
    """A video could not be encoded; it stays `failed`. Published by the media worker."""

    type: ClassVar[str] = "video.failed"
    video_id: str
    error: ErrorInfo


class ViewThreshold(EventData):
    """A video reached one of its account's view thresholds (once per video and threshold).
    Published by the stats service."""

    type: ClassVar[str] = "view.threshold"
    video_id: str
    threshold: int = Field(description="The threshold reached.")
    views: int = Field(description="The video's view count at the view that reached it.")


class SubtitleTranslated(EventData):
    """A subtitle was machine-translated from another one of the same video."""

    type: ClassVar[str] = "subtitle.translated"
    video_id: str
    subtitle_id: str = Field(description="The new, translated subtitle.")
    source_subtitle_id: str = Field(description="The subtitle it was translated from.")
    language: str = Field(description="BCP 47 language tag of the translation.")


class VideoDeleted(EventData):
    """A video and its files were deleted. Internal: never sent to webhooks. Published by the
    media service."""

    type: ClassVar[str] = "video.deleted"
    video_id: str
    status: str = Field(description="The video's status when it was deleted.")
    bytes_freed: int = Field(ge=0, description="Bytes removed from storage.")
    source_bytes: int = Field(default=0, ge=0, description="Of which the source file.")
    renditions_bytes: int = Field(default=0, ge=0, description="Of which the renditions.")


class VideoViewed(EventData):
    """One play started (as the media service counts views). Internal: never sent to
    webhooks. Published by the media service."""

    type: ClassVar[str] = "video.viewed"
    video_id: str
    session_id: str | None = Field(
        default=None, description="The player's session, if it sent one."
    )


EVENT_TYPES: Final[dict[str, type[EventData]]] = {
    cls.type: cls
    for cls in (
        VideoUploaded,
        VideoEncoded,
        VideoFailed,
        ViewThreshold,
        SubtitleTranslated,
        VideoDeleted,
        VideoViewed,
    )
}
PUBLIC_EVENT_TYPES: Final = (
    "video.uploaded",
    "video.encoded",
    "video.failed",
    "view.threshold",
    "subtitle.translated",
)
PublicEventType = Literal[
    "video.uploaded", "video.encoded", "video.failed", "view.threshold", "subtitle.translated"
]


class Event(BaseModel):
    """The envelope every message on the bus carries: `{id, type, occurred_at, account_id,
    request_id, data}`. `id` is what consumers deduplicate on."""

    model_config = _SCHEMA_CONFIG

    id: str = Field(
        default_factory=lambda: new_id("evt"),
        description="Unique per event and the same on every copy of it: deduplicate on it.",
    )
    type: str = Field(description="The event type; also the message's routing key.")
    occurred_at: datetime = Field(
        default_factory=utcnow,
        description="When it happened (RFC 3339, UTC). Events may arrive out of this order.",
        json_schema_extra={"format": "date-time"},
    )
    account_id: str = Field(description="The account the event belongs to.")
    request_id: str | None = Field(
        default=None, description="The API request that caused it, when one did."
    )
    data: dict[str, Any] = Field(description="The payload of `type`.")

    @field_serializer("occurred_at")
    def _ser_time(self, value: datetime) -> str:
        return to_rfc3339(value)

    @classmethod
    def of(cls, payload: EventData, *, account_id: str, request_id: str | None = None) -> Event:
        """Returns an envelope around a typed payload."""
        return cls(
            type=payload.type,
            account_id=account_id,
            request_id=request_id,
            data=payload.model_dump(mode="json"),
        )

    def payload(self) -> EventData:
        """Returns the typed payload (KeyError: unknown type; ValidationError: bad data)."""
        return EVENT_TYPES[self.type].model_validate(self.data)

    @property
    def is_public(self) -> bool:
        return self.type in PUBLIC_EVENT_TYPES

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Event:
        return cls.model_validate_json(raw)

    def webhook_body(self) -> dict[str, Any]:
        """Returns the public webhook body `{id, type, created_at, data}`, its `data` passed
        through the type's payload model (KeyError: unknown type; ValidationError: bad data)."""
        return WebhookBody(
            id=self.id,
            type=self.type,
            created_at=self.occurred_at,
            data=self.payload().model_dump(mode="json"),
        ).model_dump(mode="json")


class WebhookBody(BaseModel):
    """The JSON body of a webhook request: `data` is the same payload as on the bus."""

    model_config = _SCHEMA_CONFIG

    id: str = Field(description="The event id (also the `webhook-id` header): deduplicate on it.")
    type: str = Field(description="The public event type.")
    created_at: datetime = Field(
        description="When the event happened (RFC 3339, UTC): the envelope's `occurred_at`.",
        json_schema_extra={"format": "date-time"},
    )
    data: dict[str, Any] = Field(description="The payload of `type`.")

    @field_serializer("created_at")
    def _ser_time(self, value: datetime) -> str:
        return to_rfc3339(value)
