"""The event envelope and the typed payloads of every event on the bus.

Internal event names mirror the public webhook names. `video.deleted` and `video.viewed` are
internal only and are never sent to webhooks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from avc_common.ids import derived_id, new_id
from avc_common.timeutil import to_rfc3339, utcnow


class EventData(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    type: ClassVar[str]


class ErrorInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    code: str
    message: str


class RenditionInfo(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    width: int
    height: int
    bitrate_kbps: int


class VideoUploaded(EventData):
    type: ClassVar[str] = "video.uploaded"
    video_id: str
    upload_id: str | None = None
    filename: str
    title: str | None = None
    size_bytes: int
    sha256: str | None = None
    source_key: str


def video_uploaded_event_id(video_id: str) -> str:
    """Returns the one id `video.uploaded` of `video_id` carries, whoever publishes it (the
    upload service, or media re-driving a video nobody picked up): consumers then see one event."""
    return derived_id("evt", f"video.uploaded:{video_id}")


class VideoEncoded(EventData):
    type: ClassVar[str] = "video.encoded"
    video_id: str
    duration_seconds: float
    width: int
    height: int
    renditions: list[RenditionInfo]
    renditions_bytes: int = Field(ge=0)


class VideoFailed(EventData):
    type: ClassVar[str] = "video.failed"
    video_id: str
    error: ErrorInfo


class ViewThreshold(EventData):
    type: ClassVar[str] = "view.threshold"
    video_id: str
    threshold: int
    views: int


class SubtitleTranslated(EventData):
    type: ClassVar[str] = "subtitle.translated"
    video_id: str
    subtitle_id: str
    source_subtitle_id: str
    language: str


class VideoDeleted(EventData):
    type: ClassVar[str] = "video.deleted"
    video_id: str
    status: str
    bytes_freed: int = Field(ge=0)
    source_bytes: int = Field(default=0, ge=0)
    renditions_bytes: int = Field(default=0, ge=0)


class VideoViewed(EventData):
    type: ClassVar[str] = "video.viewed"
    video_id: str
    session_id: str | None = None


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

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=lambda: new_id("evt"))
    type: str
    occurred_at: datetime = Field(default_factory=utcnow)
    account_id: str
    request_id: str | None = None
    data: dict[str, Any]

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
        """Returns the public webhook body `{id, type, created_at, data}`."""
        return {
            "id": self.id,
            "type": self.type,
            "created_at": to_rfc3339(self.occurred_at),
            "data": self.data,
        }
