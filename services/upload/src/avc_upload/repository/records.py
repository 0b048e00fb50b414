"""The upload service's typed records, and their mapping to and from stored documents (the one
place, with uploads.py, that knows the documents' field names).

An upload document (`_id` = the upload id):

    account_id, kind (chunked|direct), status (see UploadStatus), filename, title,
    content_type, size, chunk_size, total_chunks, video_id, source_key, multipart_id,
    received [chunk index], parts {c<index>: {etag, size, accepted [etag]}},
    created_at, updated_at, expires_at, init_request_id, completing_since
    caller_plan, caller_api_preview, complete_request_id   who a completion is driven for
    sha256, object_etag, event_id       recorded at `assembled`
    embed_token, video_status           recorded at `registered` (media's answer)
    completed_at, purge_at, cleanup_pending
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from avc_common.internal_auth import Caller
from avc_common.timeutil import ensure_utc

Doc = dict[str, Any]


class UploadStatus(StrEnum):
    """`open` -> `completing` -> `assembled` -> `registered` -> `completed` is the chunked path
    (chunked.py says what each one promises); a direct upload starts in `receiving` and joins
    at `assembled`. `aborted`, `expired` and `failed` are final."""

    OPEN = "open"
    RECEIVING = "receiving"
    COMPLETING = "completing"
    ASSEMBLED = "assembled"
    REGISTERED = "registered"
    COMPLETED = "completed"
    ABORTED = "aborted"
    EXPIRED = "expired"
    FAILED = "failed"


IN_COMPLETION: Final = (UploadStatus.COMPLETING, UploadStatus.ASSEMBLED, UploadStatus.REGISTERED)


class UploadKind(StrEnum):
    CHUNKED = "chunked"
    DIRECT = "direct"


def part_field(index: int) -> str:
    """Returns the field under `parts` for chunk `index` (digit-only paths are not portable)."""
    return f"c{index}"


def _time(value: Any) -> datetime | None:
    return None if value is None else ensure_utc(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class RecordedPart:
    """What the record says about one chunk: its last etag, size, and every version the client
    was told was received (`accepted`)."""

    etag: str | None
    size: int | None
    accepted: frozenset[str]

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> RecordedPart:
        accepted = {str(etag) for etag in doc.get("accepted") or ()}
        etag = doc.get("etag")
        if etag:
            accepted.add(str(etag))  # records written before `accepted` existed
        return cls(etag=etag, size=_int(doc.get("size")), accepted=frozenset(accepted))


class RecordedParts:
    """The record's chunks by index, each read from the document only when asked for: a chunk
    request reads the record twice and never looks at the other chunks' entries, and parsing
    all of them there cost O(chunks) per chunk (~0.2 CPU s per 100-chunk upload)."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[str, Any] | None = None) -> None:
        self._raw: Mapping[str, Any] = raw or {}

    def get(self, index: int) -> RecordedPart | None:
        entry = self._raw.get(part_field(index))
        return None if entry is None else RecordedPart.from_doc(entry)

    def __getitem__(self, index: int) -> RecordedPart:
        part = self.get(index)
        if part is None:
            raise KeyError(index)
        return part

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RecordedParts) and self._raw == other._raw

    def __repr__(self) -> str:
        return f"RecordedParts({len(self._raw)} chunks)"


@dataclass(frozen=True)
class Upload:
    """One upload record (chunked or direct)."""

    id: str
    account_id: str
    kind: UploadKind
    status: UploadStatus
    video_id: str
    source_key: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime
    filename: str | None = None
    title: str | None = None
    content_type: str | None = None
    size: int | None = None
    chunk_size: int | None = None
    total_chunks: int | None = None
    multipart_id: str | None = None
    received: frozenset[int] = frozenset()
    parts: RecordedParts = field(default_factory=RecordedParts)
    init_request_id: str | None = None
    caller_plan: str = ""
    caller_api_preview: bool = False
    complete_request_id: str | None = None
    sha256: str | None = None
    object_etag: str | None = None
    event_id: str | None = None
    embed_token: str | None = None
    video_status: str | None = None
    completed_at: datetime | None = None
    cleanup_pending: bool = False

    # -- derived --------------------------------------------------------------------------------

    @property
    def chunks(self) -> int:
        """Returns the number of chunks of a chunked upload (0 for a direct one)."""
        return self.total_chunks or 0

    def chunk_length(self, index: int) -> int:
        """Returns the exact length chunk `index` must have (the last one takes the rest)."""
        size, chunk, total = self.size or 0, self.chunk_size or 0, self.chunks
        return size - chunk * (total - 1) if index == total - 1 else chunk

    def missing(self) -> list[int]:
        return [i for i in range(self.chunks) if i not in self.received]

    def caller(self) -> Caller:
        """Returns the caller a completion was started for (the sweeper acts on their behalf)."""
        return Caller(
            account_id=self.account_id,
            plan=self.caller_plan,
            api_preview=self.caller_api_preview,
            request_id=self.complete_request_id,
        )

    # -- mapping --------------------------------------------------------------------------------

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Upload:
        return cls(
            id=doc["_id"],
            account_id=doc["account_id"],
            kind=UploadKind(doc.get("kind") or UploadKind.CHUNKED),
            status=UploadStatus(doc["status"]),
            video_id=doc["video_id"],
            source_key=doc["source_key"],
            created_at=ensure_utc(doc["created_at"]),
            updated_at=ensure_utc(doc["updated_at"]),
            expires_at=ensure_utc(doc["expires_at"]),
            filename=doc.get("filename"),
            title=doc.get("title"),
            content_type=doc.get("content_type"),
            size=_int(doc.get("size")),
            chunk_size=_int(doc.get("chunk_size")),
            total_chunks=_int(doc.get("total_chunks")),
            multipart_id=doc.get("multipart_id"),
            received=frozenset(int(i) for i in doc.get("received") or ()),
            parts=RecordedParts(doc.get("parts")),
            init_request_id=doc.get("init_request_id"),
            caller_plan=doc.get("caller_plan") or "",
            caller_api_preview=bool(doc.get("caller_api_preview")),
            complete_request_id=doc.get("complete_request_id"),
            sha256=doc.get("sha256"),
            object_etag=doc.get("object_etag"),
            event_id=doc.get("event_id"),
            embed_token=doc.get("embed_token"),
            video_status=doc.get("video_status"),
            completed_at=_time(doc.get("completed_at")),
            cleanup_pending=bool(doc.get("cleanup_pending")),
        )

    def to_doc(self) -> Doc:
        """Returns the document of a new record (only what `init`/a direct upload know)."""
        doc: Doc = {
            "_id": self.id,
            "account_id": self.account_id,
            "kind": self.kind.value,
            "status": self.status.value,
            "video_id": self.video_id,
            "source_key": self.source_key,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "expires_at": self.expires_at,
            "caller_plan": self.caller_plan,
            "caller_api_preview": self.caller_api_preview,
        }
        optional = {
            "filename": self.filename,
            "title": self.title,
            "content_type": self.content_type,
            "size": self.size,
            "chunk_size": self.chunk_size,
            "total_chunks": self.total_chunks,
            "multipart_id": self.multipart_id,
            "init_request_id": self.init_request_id,
            "complete_request_id": self.complete_request_id,
        }
        doc.update({name: value for name, value in optional.items() if value is not None})
        if self.kind is UploadKind.CHUNKED:
            doc["received"] = sorted(self.received)
            doc["parts"] = {}
        return doc


@dataclass(frozen=True)
class Assembled:
    """What `assembled` records: the stored object's SHA-256 and etag, the event id to publish
    (and, for a direct upload, what the form said)."""

    sha256: str
    object_etag: str
    event_id: str
    filename: str | None = None
    title: str | None = None
    size: int | None = None

    def to_doc(self) -> Doc:
        doc: Doc = {"sha256": self.sha256, "object_etag": self.object_etag}
        doc["event_id"] = self.event_id
        extra = {"filename": self.filename, "title": self.title, "size": self.size}
        doc.update({name: value for name, value in extra.items() if value is not None})
        return doc
