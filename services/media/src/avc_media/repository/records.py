"""The media service's typed records, and their mapping to and from stored documents (the one
place that knows the documents' field names).

A video document:

    _id, account_id, upload_id, title, filename, status (processing|ready|failed), size_bytes,
    sha256, source_key, duration_seconds, width, height, has_audio, allowed_domains,
    visibility, embed_token, renditions [{name, width, height, bitrate_kbps, bandwidth, ...}],
    renditions_bytes, preset_id, error {code, message} | None, subtitles [...], request_id,
    created_at, updated_at, encoded_at, failed_at
    upload_event_id        id of the `video.uploaded` event (re-drives republish it unchanged)
    lease_owner, lease_expires_at, encode_attempts, queued_at     the encode lease (worker)
    outbox {event_id: event}, outbox_at    events written with the state change, not yet sent
    deleted_at, deleted_source_bytes, deleted_renditions_bytes, deleted_event_id
                           a delete in progress
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, StrEnum
from typing import Any, Final

from avc_common.events import Event
from avc_common.timeutil import ensure_utc

Doc = dict[str, Any]


class VideoStatus(StrEnum):
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class Visibility(StrEnum):
    PUBLIC = "public"
    PRIVATE = "private"


class Keep(Enum):
    """Marks a field a change leaves as it is (None would mean "clear it")."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


def _time(value: Any) -> datetime | None:
    return None if value is None else ensure_utc(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class VideoError:
    """Why a video failed (`invalid_media`, `duration_exceeded`, …), for people."""

    code: str
    message: str

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> VideoError | None:
        return None if doc is None else cls(code=doc["code"], message=doc["message"])

    def to_doc(self) -> Doc:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class Rendition:
    """One HLS rung as encoded (the last five are what the worker measured)."""

    name: str
    width: int
    height: int
    bitrate_kbps: int
    bandwidth: int | None = None
    average_bandwidth: int | None = None
    codecs: str | None = None
    segments: int | None = None
    bytes: int | None = None

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Rendition:
        return cls(
            name=doc["name"],
            width=int(doc["width"]),
            height=int(doc["height"]),
            bitrate_kbps=int(doc["bitrate_kbps"]),
            bandwidth=_int(doc.get("bandwidth")),
            average_bandwidth=_int(doc.get("average_bandwidth")),
            codecs=doc.get("codecs"),
            segments=_int(doc.get("segments")),
            bytes=_int(doc.get("bytes")),
        )

    def to_doc(self) -> Doc:
        return {
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "bitrate_kbps": self.bitrate_kbps,
            "bandwidth": self.bandwidth,
            "average_bandwidth": self.average_bandwidth,
            "codecs": self.codecs,
            "segments": self.segments,
            "bytes": self.bytes,
        }


@dataclass(frozen=True)
class Subtitle:
    """A subtitle track of a video: `fields` are its other public attributes (language, …)."""

    id: str
    path: str
    created_at: datetime | str | None
    fields: Mapping[str, Any]

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Subtitle:
        created = doc.get("created_at")
        return cls(
            id=doc["id"],
            path=doc.get("path") or f"subtitles/{doc['id']}.vtt",
            created_at=ensure_utc(created) if isinstance(created, datetime) else created,
            fields={
                k: v for k, v in doc.items() if k not in ("id", "path", "account_id", "created_at")
            },
        )


@dataclass(frozen=True)
class Preset:
    """A player preset (owned by the presets feature): `settings` are its public fields."""

    id: str
    account_id: str
    settings: Mapping[str, Any]

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Preset:
        return cls(
            id=doc["_id"],
            account_id=doc["account_id"],
            settings={k: v for k, v in doc.items() if k not in ("_id", "account_id")},
        )


@dataclass(frozen=True)
class Encoded:
    """What a successful encode recorded."""

    duration_seconds: float
    width: int
    height: int
    has_audio: bool
    renditions: tuple[Rendition, ...]
    renditions_bytes: int


@dataclass(frozen=True)
class VideoChanges:
    """An owner's change of a video: KEEP leaves a field as it is."""

    title: str | Keep = KEEP
    allowed_domains: tuple[str, ...] | Keep = KEEP
    visibility: Visibility | Keep = KEEP
    preset_id: str | Keep | None = KEEP

    def to_set(self) -> Doc:
        """Returns the stored fields this change sets."""
        out: Doc = {}
        if not isinstance(self.title, Keep):
            out["title"] = self.title
        if not isinstance(self.allowed_domains, Keep):
            out["allowed_domains"] = list(self.allowed_domains)
        if not isinstance(self.visibility, Keep):
            out["visibility"] = self.visibility.value
        if not isinstance(self.preset_id, Keep):
            out["preset_id"] = self.preset_id
        return out


@dataclass(frozen=True)
class Video:
    id: str
    account_id: str
    upload_id: str | None
    title: str
    filename: str
    status: VideoStatus
    size_bytes: int
    sha256: str | None
    source_key: str
    embed_token: str
    created_at: datetime
    updated_at: datetime
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    has_audio: bool | None = None
    allowed_domains: tuple[str, ...] = ()
    visibility: Visibility = Visibility.PUBLIC
    renditions: tuple[Rendition, ...] = ()
    renditions_bytes: int | None = None
    preset_id: str | None = None
    error: VideoError | None = None
    subtitles: tuple[Subtitle, ...] = ()
    request_id: str | None = None
    # The encode lease and re-drive bookkeeping (see the module docstring).
    encode_attempts: int = 0
    upload_event_id: str | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    queued_at: datetime | None = None
    outbox: tuple[Event, ...] = field(default=(), repr=False)
    """Events parked with the state change they announce, oldest first."""
    outbox_at: datetime | None = None
    # A delete in progress.
    deleted_at: datetime | None = None
    deleted_source_bytes: int = 0
    deleted_renditions_bytes: int = 0

    @property
    def deleted(self) -> bool:
        return self.deleted_at is not None

    @property
    def processing(self) -> bool:
        return self.status is VideoStatus.PROCESSING

    @property
    def ready(self) -> bool:
        return self.status is VideoStatus.READY

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Video:
        outbox = [Event.model_validate(raw) for raw in (doc.get("outbox") or {}).values()]
        outbox.sort(key=lambda e: e.occurred_at)
        return cls(
            id=doc["_id"],
            account_id=doc["account_id"],
            upload_id=doc.get("upload_id"),
            title=doc["title"],
            filename=doc["filename"],
            status=VideoStatus(doc["status"]),
            size_bytes=int(doc["size_bytes"]),
            sha256=doc.get("sha256"),
            source_key=doc["source_key"],
            embed_token=doc["embed_token"],
            created_at=ensure_utc(doc["created_at"]),
            updated_at=ensure_utc(doc.get("updated_at") or doc["created_at"]),
            duration_seconds=doc.get("duration_seconds"),
            width=_int(doc.get("width")),
            height=_int(doc.get("height")),
            has_audio=doc.get("has_audio"),
            allowed_domains=tuple(doc.get("allowed_domains") or ()),
            visibility=Visibility(doc.get("visibility") or Visibility.PUBLIC),
            renditions=tuple(Rendition.from_doc(r) for r in doc.get("renditions") or ()),
            renditions_bytes=_int(doc.get("renditions_bytes")),
            preset_id=doc.get("preset_id"),
            error=VideoError.from_doc(doc.get("error")),
            subtitles=tuple(Subtitle.from_doc(s) for s in doc.get("subtitles") or ()),
            request_id=doc.get("request_id"),
            encode_attempts=int(doc.get("encode_attempts") or 0),
            upload_event_id=doc.get("upload_event_id"),
            lease_owner=doc.get("lease_owner"),
            lease_expires_at=_time(doc.get("lease_expires_at")),
            queued_at=_time(doc.get("queued_at")),
            outbox=tuple(outbox),
            outbox_at=_time(doc.get("outbox_at")),
            deleted_at=_time(doc.get("deleted_at")),
            deleted_source_bytes=int(doc.get("deleted_source_bytes") or 0),
            deleted_renditions_bytes=int(doc.get("deleted_renditions_bytes") or 0),
        )

    def to_new_doc(self) -> Doc:
        """Returns the document of a video being registered (nothing encoded, leased or
        deleted yet)."""
        return {
            "_id": self.id,
            "account_id": self.account_id,
            "upload_id": self.upload_id,
            "title": self.title,
            "filename": self.filename,
            "status": self.status.value,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "source_key": self.source_key,
            "duration_seconds": self.duration_seconds,
            "width": self.width,
            "height": self.height,
            "allowed_domains": list(self.allowed_domains),
            "visibility": self.visibility.value,
            "embed_token": self.embed_token,
            "renditions": [r.to_doc() for r in self.renditions],
            "renditions_bytes": self.renditions_bytes,
            "preset_id": self.preset_id,
            "error": self.error.to_doc() if self.error else None,
            "encode_attempts": self.encode_attempts,
            "request_id": self.request_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def encoded_fields(result: Encoded, now: datetime) -> Doc:
    """Returns the stored fields of a video encoded to `ready`."""
    return {
        "status": VideoStatus.READY.value,
        "duration_seconds": result.duration_seconds,
        "width": result.width,
        "height": result.height,
        "has_audio": result.has_audio,
        "renditions": [r.to_doc() for r in result.renditions],
        "renditions_bytes": result.renditions_bytes,
        "error": None,
        "encoded_at": now,
    }


def failed_fields(error: VideoError, now: datetime) -> Doc:
    """Returns the stored fields of a video that failed."""
    return {"status": VideoStatus.FAILED.value, "error": error.to_doc(), "failed_at": now}
