"""Upload logic: chunked uploads (init, chunk, status, abort, complete), the direct upload, and
the sweeper's pass. Routes only translate HTTP to these calls; storage of records is in
repository.py, scoped to the caller's account.

Where the bytes go: a chunked upload is one multipart upload of the object store, started at
`init` on the final key `sources/<video_id>/original` (S3 binds a multipart upload to its key,
which is why the video id is chosen at `init`). Chunk `i` is streamed straight into part `i+1`;
`complete` asks the store to concatenate the parts. A direct upload is streamed into the same
key with one `put`. Nothing is buffered whole and nothing is spooled to a temp file here.

The record's state machine (crash safety). Each arrow is one conditional atomic update made
only after the side effect before it is durable, so a process killed anywhere leaves a state
from which the client's retry of the same call (or the sweeper) carries on:

    open ──complete──▶ completing ──▶ assembled ──▶ registered ──▶ completed
     │ (chunks)          │  parts checked,  │ object +     │ media knows    answer stored;
     │                   │  multipart       │ SHA-256 +    │ the video      repeated on
     ▼                   │  completed       │ event id     │ (embed token)  every retry
    aborted / expired    ▼                  │ recorded     │
                    back to open when chunks are missing or were replaced (409)

- killed between chunks: `open`; the parts stored and recorded are kept, status lists the rest
  as missing; a chunk stored but not yet recorded is just missing and gets replaced.
- killed in `completing` before the store completed the object: the retry checks the parts
  again and completes. Killed after the store completed it but before `assembled` was
  recorded (also while storage was still removing the parts): the retry looks for the object
  at its key before anything else, finds it (same bytes) and takes its SHA-256 from there.
- killed in `assembled` (before or after media answered): the retry registers again; media is
  idempotent on (account, upload_id), so it answers the same video and embed token.
- killed in `registered` (before or after the event went out): the retry publishes the event
  again with the event id recorded at `assembled`; consumers deduplicate on event ids.
- the video id is fixed at `init` and the object key with it, so every retry ends at the same
  video id and the same bytes. The sweeper re-drives completions nobody touched for
  `redrive_after_seconds` (DESIGN: stuck work is re-driven from the service's own state).

SHA-256 of the whole file, without an avoidable second read: chunks pass through this service
out of order, so it cannot hash the file as they arrive (SHA-256 is sequential and a hash state
cannot be handed between requests or processes). The local adapter is told the chunk size, so
it writes each chunk at its final offset in one staged file and `complete` is a rename. It
hashes in the background as chunks land: each chunk that extends the in-order prefix is read
once from the page cache right after it was written, so `complete` hashes only what is left
(usually nothing); the hash is kept in the object's sidecar so `stat` returns it after a crash
(`ObjectInfo.sha256`). S3 concatenates on the server, so there is no pass to hash in;
there the service reads the completed object once, streamed (`_hash_object`) — the only read
that cannot be avoided without buffering out-of-order chunks. A direct upload arrives in order
and is hashed while it streams in, on every adapter.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from collections.abc import AsyncIterable, Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import anyio

from avc_common.bus import Bus, BusError
from avc_common.errors import AppError, InternalError, ValidationFailed
from avc_common.events import Event, VideoUploaded, video_uploaded_event_id
from avc_common.ids import is_id, new_id
from avc_common.internal_auth import Caller
from avc_common.logging import get_logger
from avc_common.objects import (
    InvalidPart,
    MultipartNotFound,
    ObjectInfo,
    ObjectNotFound,
    ObjectsError,
    ObjectStore,
    PartInfo,
    SizeMismatch,
)
from avc_common.objects.base import normalize_etag
from avc_common.timeutil import ensure_utc, utcnow
from avc_common.web.body import parse_json_object
from avc_upload.config import MIB, UploadSettings
from avc_upload.errors import (
    ChecksumMismatch,
    ChunkOutOfRange,
    ChunkSizeMismatch,
    DirectUploadTooLarge,
    FileTooLarge,
    InvalidFilename,
    InvalidForm,
    InvalidHeader,
    InvalidSize,
    InvalidTitle,
    MissingHeader,
    NotMultipart,
    StorageUnavailable,
    TooManyOpenUploads,
    UploadCompleted,
    UploadExpired,
    UploadIncomplete,
    UploadNotFound,
)
from avc_upload.media import MediaClient, RegisterVideo
from avc_upload.metrics import UploadMetrics
from avc_upload.repository import (
    ABORTED,
    ASSEMBLED,
    COMPLETED,
    COMPLETING,
    EXPIRED,
    FAILED,
    IN_COMPLETION,
    OPEN,
    RECEIVING,
    REGISTERED,
    Doc,
    UploadRepository,
    part_field,
)
from avc_upload.schemas import (
    ChunkResponse,
    InitResponse,
    UploadStatus,
    UploadStatusResponse,
    VideoCreated,
)
from avc_upload.streams import (
    FormReader,
    Measured,
    checked_chunk,
    form_boundary,
    hash_update,
    measured,
    read_limited,
)

log = get_logger(__name__)

CHUNK_SIZE: Final = 5 * MIB
MAX_CHUNKS: Final = 10_000
MAX_FILENAME_CHARS: Final = 255
MAX_TITLE_CHARS: Final = 500
JSON_BODY_LIMIT: Final = 64 * 1024
# Room for the form's boundaries and headers around the file in a direct upload.
FORM_OVERHEAD_BYTES: Final = 64 * 1024
_TITLE_FIELD_LIMIT: Final = 4 * MAX_TITLE_CHARS
_INDEX_RE: Final = re.compile(r"^-?[0-9]{1,12}$")
_SHA256_RE: Final = re.compile(r"^[0-9a-fA-F]{64}$")
# A cleanup (abort of the parts, delete of a half-stored direct upload) that failed is retried
# by the sweeper after this long.
_CLEANUP_RETRY: Final = timedelta(seconds=60)
_SWEEP_BATCH: Final = 100
_CHUNKED: Final = "chunked"
_DIRECT: Final = "direct"


# -- validation ------------------------------------------------------------------------------


def plan_chunks(size: int) -> tuple[int, int]:
    """Returns (chunk_size, total_chunks): 5 MiB chunks unless that needs more than 10,000,
    then the smallest whole number of MiB that fits (API.md)."""
    chunk = CHUNK_SIZE
    if -(-size // chunk) > MAX_CHUNKS:
        chunk = -(-size // (MAX_CHUNKS * MIB)) * MIB
    return chunk, -(-size // chunk)


def chunk_length(doc: Mapping[str, Any], index: int) -> int:
    """Returns the exact length chunk `index` must have (the last one takes the rest)."""
    size, chunk, total = int(doc["size"]), int(doc["chunk_size"]), int(doc["total_chunks"])
    return size - chunk * (total - 1) if index == total - 1 else chunk


def source_key(video_id: str) -> str:
    """Returns the object key of a video's original file."""
    return f"sources/{video_id}/original"


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a JSON "\ud800"
        return False
    return True


def check_filename(value: Any) -> str:
    """Returns `value` if it is a usable file name; raises InvalidFilename."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidFilename('filename is required: a non-empty string such as "lesson-1.mp4".')
    if len(value) > MAX_FILENAME_CHARS:
        raise InvalidFilename(f"filename must be at most {MAX_FILENAME_CHARS} characters.")
    if "/" in value or "\\" in value or value in (".", ".."):
        raise InvalidFilename("filename must be a bare file name, without '/' or '\\'.")
    if _has_control(value) or not _is_utf8(value):
        raise InvalidFilename("filename must not contain control characters.")
    return value


def check_title(value: Any, filename: str) -> str:
    """Returns the title, or the filename without its extension when none is given."""
    if value is None or value == "":
        stem, dot, _ = filename.rpartition(".")
        return stem if dot and stem.strip() else filename
    if not isinstance(value, str):
        raise InvalidTitle("title must be a string.")
    if len(value) > MAX_TITLE_CHARS:
        raise InvalidTitle(f"title must be at most {MAX_TITLE_CHARS} characters.")
    if _has_control(value.replace("\t", " ")) or not _is_utf8(value):
        raise InvalidTitle("title must not contain control characters.")
    return value


def check_size(value: Any, *, max_bytes: int) -> int:
    """Returns the declared file size; raises InvalidSize or FileTooLarge."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSize("size is required: the file's size in bytes, a whole number.")
    if value < 1:
        raise InvalidSize("size must be at least 1 byte.")
    if value > max_bytes:
        raise FileTooLarge(
            f"The file is {value} bytes; uploads may be at most {max_bytes} bytes.",
            details={"max_bytes": max_bytes},
        )
    return value


def parse_chunk_headers(
    upload_id: str | None, index: str | None, sha256: str | None
) -> tuple[str, int, str | None]:
    """Returns (upload id, chunk index, lowercase hex SHA-256 or None) from the headers."""
    if not upload_id:
        raise MissingHeader("The X-Upload-ID header is required (the upload_id from init).")
    if index is None or not index.strip():
        raise MissingHeader("The X-Chunk-Index header is required (0-based chunk number).")
    if not _INDEX_RE.match(index.strip()):
        raise InvalidHeader(f"X-Chunk-Index must be a whole number, not {index[:40]!r}.")
    if sha256 is not None:
        if not _SHA256_RE.match(sha256.strip()):
            raise InvalidHeader("X-Chunk-SHA256 must be 64 hexadecimal digits.")
        sha256 = sha256.strip().lower()
    return upload_id.strip(), int(index.strip()), sha256


def parse_content_length(value: str | None) -> int | None:
    """Returns the Content-Length as a number, or None when absent (chunked encoding)."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def _content_type_of(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _missing(doc: Mapping[str, Any]) -> list[int]:
    received = set(doc.get("received") or ())
    return [i for i in range(int(doc["total_chunks"])) if i not in received]


def _accepted_etags(entry: Mapping[str, Any]) -> set[str]:
    """Returns every version of a chunk the client was told was received."""
    accepted = {str(etag) for etag in entry.get("accepted") or ()}
    if entry.get("etag"):
        accepted.add(str(entry["etag"]))  # records written before `accepted` existed
    return accepted


def _incomplete(missing: list[int], reason: str = "") -> UploadIncomplete:
    count = len(missing)
    chunks = "chunk is" if count == 1 else "chunks are"
    message = f"{count} {chunks} missing; send them, then call complete again."
    if reason:
        message = f"{count} {chunks} missing ({reason}); send them, then call complete again."
    return UploadIncomplete(message, details={"missing": missing})


def _public_status(status: str) -> UploadStatus:
    if status == COMPLETED:
        return "completed"
    if status in IN_COMPLETION:
        return "completing"
    return "open"


def _answer(doc: Mapping[str, Any]) -> VideoCreated:
    return VideoCreated(
        video_id=doc["video_id"],
        embed_token=doc["embed_token"],
        status=doc.get("video_status") or "processing",
    )


def caller_of(doc: Mapping[str, Any]) -> Caller:
    """Returns the caller a completion was started for (the sweeper acts on their behalf)."""
    return Caller(
        account_id=doc["account_id"],
        plan=doc.get("caller_plan") or "",
        api_preview=bool(doc.get("caller_api_preview")),
        request_id=doc.get("complete_request_id"),
    )


@dataclass
class SweepReport:
    expired: int = 0
    cleaned: int = 0
    redriven: int = 0
    reopened: int = 0
    failed: int = 0


class UploadService:
    def __init__(
        self,
        *,
        repository: UploadRepository,
        objects: ObjectStore,
        bus: Bus,
        media: MediaClient,
        settings: UploadSettings,
        metrics: UploadMetrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._repo = repository
        self._objects = objects
        self._bus = bus
        self._media = media
        self._settings = settings
        self._metrics = metrics
        self._clock = clock

    # -- init --------------------------------------------------------------------------------

    async def init_upload(self, caller: Caller, *, body: AsyncIterable[bytes]) -> InitResponse:
        """Returns a new chunked upload's id, chunk plan and expiry."""
        data = parse_json_object(await read_limited(body, limit=JSON_BODY_LIMIT))
        filename = check_filename(data.get("filename"))
        size = check_size(data.get("size"), max_bytes=self._settings.max_file_bytes)
        title = check_title(data.get("title"), filename)
        now = self._clock()
        cap = self._settings.max_open_uploads
        if await self._repo.count_open(caller.account_id, now) >= cap:
            raise TooManyOpenUploads(
                f"This account already has {cap} chunked uploads open; complete or abort some "
                "(DELETE /api/v1/upload/:upload_id) before starting another.",
                details={"max_open_uploads": cap},
            )
        chunk_size, total = plan_chunks(size)
        upload_id, video_id = new_id("upl"), new_id("vid")
        key = source_key(video_id)
        content_type = _content_type_of(filename)
        try:
            # Chunk i is part i+1, every one but the last exactly chunk_size long: with that
            # hint the local adapter writes chunks in place and complete becomes a rename.
            multipart_id = await self._objects.create_multipart(
                key, content_type=content_type, part_size=chunk_size
            )
        except ObjectsError as exc:
            log.warning("storage_failed", step="create_multipart", error=str(exc))
            raise StorageUnavailable() from exc
        expires_at = now + timedelta(seconds=self._settings.expiry_seconds)
        doc: Doc = {
            "_id": upload_id,
            "account_id": caller.account_id,
            "kind": _CHUNKED,
            "status": OPEN,
            "filename": filename,
            "title": title,
            "content_type": content_type,
            "size": size,
            "chunk_size": chunk_size,
            "total_chunks": total,
            "video_id": video_id,
            "source_key": key,
            "multipart_id": multipart_id,
            "received": [],
            "parts": {},
            "created_at": now,
            "updated_at": now,
            "expires_at": expires_at,
            "init_request_id": caller.request_id,
        }
        try:
            await self._repo.insert(doc)
        except BaseException:
            with anyio.CancelScope(shield=True), suppress(ObjectsError):
                await self._objects.abort_multipart(key, multipart_id)
            raise
        log.info("upload_started", upload_id=upload_id, size=size, total_chunks=total)
        return InitResponse(
            upload_id=upload_id, chunk_size=chunk_size, total_chunks=total, expires_at=expires_at
        )

    # -- loading -----------------------------------------------------------------------------

    async def _load(self, caller: Caller, upload_id: str) -> Doc:
        """Returns the caller's chunked upload; raises 404 (unknown, another account's,
        aborted) or 410 (expired, expiring it now if the sweeper has not yet)."""
        if not is_id(upload_id, "upl"):
            raise UploadNotFound()
        doc = await self._repo.get(caller.account_id, upload_id)
        if doc is None or doc.get("kind") != _CHUNKED or doc["status"] in (ABORTED, FAILED):
            raise UploadNotFound()
        if doc["status"] == EXPIRED:
            raise UploadExpired()
        if doc["status"] == OPEN and ensure_utc(doc["expires_at"]) <= self._clock():
            await self._expire(doc)
            raise UploadExpired()
        return doc

    async def _reload(self, doc: Mapping[str, Any]) -> Doc:
        fresh = await self._repo.get(doc["account_id"], doc["_id"])
        if fresh is None:
            raise UploadNotFound()
        return fresh

    def _not_open(self, doc: Mapping[str, Any] | None) -> AppError:
        """Returns the error for a chunk sent to an upload that is not open."""
        status = doc["status"] if doc is not None else None
        if status == COMPLETED:
            return UploadCompleted("This upload is already completed; it takes no more chunks.")
        if status in IN_COMPLETION:
            return UploadCompleted(
                "This upload is being completed; it takes no more chunks. Call complete again "
                "to get its result."
            )
        if status == EXPIRED:
            return UploadExpired()
        return UploadNotFound()

    # -- chunks ------------------------------------------------------------------------------

    async def put_chunk(
        self,
        caller: Caller,
        *,
        upload_id: str | None,
        chunk_index: str | None,
        chunk_sha256: str | None,
        content_length: str | None,
        body: AsyncIterable[bytes],
    ) -> ChunkResponse:
        """Returns the upload's progress after storing one chunk as its multipart part."""
        try:
            result = await self._put_chunk(
                caller, upload_id, chunk_index, chunk_sha256, content_length, body
            )
        except ChecksumMismatch:
            self._metrics.chunk("checksum_mismatch")
            raise
        except ChunkSizeMismatch:
            self._metrics.chunk("size_mismatch")
            raise
        except AppError as exc:
            self._metrics.chunk("rejected" if exc.status < 500 else "error")
            raise
        self._metrics.chunk("ok")
        return result

    async def _put_chunk(
        self,
        caller: Caller,
        upload_id_header: str | None,
        index_header: str | None,
        sha256_header: str | None,
        content_length: str | None,
        body: AsyncIterable[bytes],
    ) -> ChunkResponse:
        upload_id, index, sha256 = parse_chunk_headers(
            upload_id_header, index_header, sha256_header
        )
        doc = await self._load(caller, upload_id)
        if doc["status"] != OPEN:
            raise self._not_open(doc)
        total = int(doc["total_chunks"])
        if not 0 <= index < total:
            raise ChunkOutOfRange(
                f"Chunk index {index} is outside 0..{total - 1} for this upload.",
                details={"total_chunks": total},
            )
        expected = chunk_length(doc, index)
        declared = parse_content_length(content_length)
        if declared is not None and declared != expected:
            # Refused before reading a byte of the body.
            raise ChunkSizeMismatch(
                f"Chunk {index} must be {expected} bytes; Content-Length says {declared}.",
                details={"expected_bytes": expected, "received_bytes": declared},
            )
        stream = checked_chunk(body, index=index, expected=expected, sha256=sha256)
        try:
            part = await self._objects.put_part(
                doc["source_key"], doc["multipart_id"], index + 1, stream, size=expected
            )
        except SizeMismatch as exc:  # the stream checks first; kept for safety
            raise ChunkSizeMismatch(f"Chunk {index} must be {expected} bytes.") from exc
        except MultipartNotFound as exc:
            # Aborted, expired or completed while this chunk was streaming.
            fresh = await self._repo.get(caller.account_id, upload_id)
            if fresh is not None and fresh["status"] == OPEN:
                log.error("multipart_upload_lost", upload_id=upload_id)
                raise StorageUnavailable() from exc
            raise self._not_open(fresh) from exc
        except ObjectsError as exc:
            log.warning("storage_failed", step="put_part", error=str(exc))
            raise StorageUnavailable() from exc
        updated = await self._repo.record_part(
            caller.account_id,
            upload_id,
            index,
            etag=normalize_etag(part.etag),
            size=part.size,
            now=self._clock(),
        )
        if updated is None:
            # Not open any more: a complete, abort or expiry won the race. The stored part is
            # harmless (complete takes only versions recorded as accepted; abort/expiry drop
            # every part).
            raise self._not_open(await self._repo.get(caller.account_id, upload_id))
        self._metrics.stored("chunk", expected)
        return ChunkResponse(
            upload_id=upload_id,
            chunk_index=index,
            received_chunks=len(updated.get("received") or ()),
            total_chunks=total,
        )

    # -- status and abort --------------------------------------------------------------------

    async def status(self, caller: Caller, upload_id: str) -> UploadStatusResponse:
        """Returns what a client needs to resume: which chunks arrived and which are missing."""
        doc = await self._load(caller, upload_id)
        received = sorted(set(doc.get("received") or ()))
        return UploadStatusResponse(
            upload_id=doc["_id"],
            status=_public_status(doc["status"]),
            filename=doc["filename"],
            size=doc["size"],
            chunk_size=doc["chunk_size"],
            total_chunks=doc["total_chunks"],
            received=received,
            missing=_missing(doc),
            expires_at=ensure_utc(doc["expires_at"]),
            video_id=doc["video_id"] if doc["status"] == COMPLETED else None,
        )

    async def abort(self, caller: Caller, upload_id: str) -> None:
        """Aborts an open upload and removes its parts (again for an aborted one: idempotent)."""
        if not is_id(upload_id, "upl"):
            raise UploadNotFound()
        for _ in range(3):
            doc = await self._repo.get(caller.account_id, upload_id)
            if doc is None or doc.get("kind") != _CHUNKED or doc["status"] == FAILED:
                raise UploadNotFound()
            status = doc["status"]
            if status == ABORTED:
                await self._cleanup(doc)
                return
            if status == EXPIRED:
                raise UploadExpired()
            if status == COMPLETED or status in IN_COMPLETION:
                raise UploadCompleted(
                    "This upload is completed (or being completed) and cannot be aborted; "
                    "delete the video instead."
                )
            now = self._clock()
            aborted = await self._repo.transition(
                caller.account_id,
                upload_id,
                from_status=OPEN,
                to_status=ABORTED,
                now=now,
                set_fields={"cleanup_pending": True, "purge_at": self._purge_at(now)},
            )
            if aborted is not None:
                log.info("upload_aborted", upload_id=upload_id)
                await self._cleanup(aborted, strict=True)
                return
        raise InternalError()  # pragma: no cover - the record kept changing under us

    def _purge_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self._settings.record_retention_seconds)

    async def _cleanup(self, doc: Mapping[str, Any], *, strict: bool = False) -> bool:
        """Returns whether the storage left by an aborted, expired or failed upload is gone
        (the multipart upload and its parts; a half-stored direct upload). When the store
        fails, the sweeper retries later; `strict` also raises 503 to the caller."""
        try:
            if doc.get("kind") == _CHUNKED and doc.get("multipart_id"):
                await self._objects.abort_multipart(doc["source_key"], doc["multipart_id"])
            # An ended upload never registered a video, so an object at its key (a direct
            # upload's half, or a chunked one assembled by a complete that then went back to
            # open) is nobody's.
            await self._objects.delete(doc["source_key"])
        except ObjectsError as exc:
            log.warning("cleanup_failed", upload_id=doc["_id"], error=str(exc))
            if strict:
                raise StorageUnavailable() from exc
            return False
        await self._repo.transition(
            doc["account_id"],
            doc["_id"],
            from_status=doc["status"],
            to_status=doc["status"],
            now=self._clock(),
            set_fields={"cleanup_pending": False},
        )
        return True

    async def _expire(self, doc: Mapping[str, Any]) -> bool:
        """Returns whether this call expired the upload (and removed its storage)."""
        now = self._clock()
        expired = await self._repo.transition(
            doc["account_id"],
            doc["_id"],
            from_status=(OPEN, RECEIVING),
            to_status=EXPIRED,
            now=now,
            set_fields={"cleanup_pending": True, "purge_at": self._purge_at(now)},
            unset_fields=("parts",),
            extra_filter={"expires_at": {"$lte": now}},
        )
        if expired is None:
            return False
        self._metrics.expired.labels(self._metrics.service).inc()
        log.info("upload_expired", upload_id=doc["_id"], kind=doc.get("kind"))
        await self._cleanup(expired)
        return True

    # -- complete ----------------------------------------------------------------------------

    async def complete(self, caller: Caller, *, body: AsyncIterable[bytes]) -> VideoCreated:
        """Returns the video made of the upload's chunks; the same answer on every call."""
        data = parse_json_object(await read_limited(body, limit=JSON_BODY_LIMIT))
        upload_id = data.get("upload_id")
        if not isinstance(upload_id, str) or not upload_id:
            raise ValidationFailed(
                "upload_id is required.",
                details={
                    "errors": [{"loc": ["body", "upload_id"], "msg": "required", "type": "missing"}]
                },
            )
        for _ in range(3):
            doc = await self._load(caller, upload_id)
            status = doc["status"]
            if status == COMPLETED:
                self._metrics.complete(_CHUNKED, "repeated")
                return _answer(doc)
            if status in IN_COMPLETION:
                # Interrupted (or running in another request): carry on from where it is.
                await self._repo.touch(
                    caller.account_id, upload_id, status=status, now=self._clock()
                )
                return await self._drive(doc, caller)
            missing = _missing(doc)
            if missing:
                self._metrics.complete(_CHUNKED, "incomplete")
                raise _incomplete(missing)
            now = self._clock()
            started = await self._repo.transition(
                caller.account_id,
                upload_id,
                from_status=OPEN,
                to_status=COMPLETING,
                now=now,
                set_fields={
                    "caller_plan": caller.plan,
                    "caller_api_preview": caller.api_preview,
                    "complete_request_id": caller.request_id,
                    "completing_since": now,
                },
                extra_filter={"expires_at": {"$gt": now}},
            )
            if started is not None:
                return await self._drive(started, caller)
            # Changed under us (a chunk, another complete, expiry): look again.
        raise InternalError()  # pragma: no cover

    async def _drive(self, doc: Doc, caller: Caller) -> VideoCreated:
        """Returns the answer after taking the record from its state to `completed`."""
        kind = doc.get("kind", _CHUNKED)
        try:
            if doc["status"] == COMPLETING:
                doc = await self._assemble(doc)
            if doc["status"] == ASSEMBLED:
                doc = await self._register(doc, caller)
            if doc["status"] == REGISTERED:
                doc = await self._publish(doc, caller)
        except UploadIncomplete:
            self._metrics.complete(kind, "incomplete")
            raise
        except BaseException:
            self._metrics.complete(kind, "error")
            raise
        if doc["status"] != COMPLETED:
            log.error("completion_left_unfinished", upload_id=doc["_id"], status=doc["status"])
            raise InternalError()
        self._metrics.complete(kind, "completed")
        return _answer(doc)

    async def _reopen(
        self, doc: Doc, *, drop: list[int], set_fields: Mapping[str, Any] | None = None
    ) -> None:
        """Puts a completing upload back to `open`, forgetting the chunks in `drop`."""
        received = sorted(set(doc.get("received") or ()) - set(drop))
        await self._repo.transition(
            doc["account_id"],
            doc["_id"],
            from_status=COMPLETING,
            to_status=OPEN,
            now=self._clock(),
            set_fields={"received": received, **(set_fields or {})},
            unset_fields=[f"parts.{part_field(i)}" for i in drop] if not set_fields else (),
        )

    def _mismatched(self, doc: Doc, stored: list[PartInfo]) -> list[int]:
        """Returns the chunks whose stored part is not a version the client was told was
        received (lost, or replaced by a request that failed after storing its bytes)."""
        by_number = {p.part_number: p for p in stored}
        recorded: Mapping[str, Any] = doc.get("parts") or {}
        bad = []
        for index in range(int(doc["total_chunks"])):
            entry = recorded.get(part_field(index))
            part = by_number.get(index + 1)
            if (
                entry is None
                or part is None
                or normalize_etag(part.etag) not in _accepted_etags(entry)
                or part.size != chunk_length(doc, index)
            ):
                bad.append(index)
        return bad

    async def _assemble(self, doc: Doc) -> Doc:
        """`completing` -> `assembled`: checks every part against the recorded versions, has the
        store complete the object and records its SHA-256 (and the event id to publish)."""
        missing = _missing(doc)
        if missing:
            await self._reopen(doc, drop=[])
            raise _incomplete(missing)
        key, multipart_id = doc["source_key"], doc["multipart_id"]
        try:
            # The key is this upload's alone and only `complete` writes it: an object there is
            # what a previous attempt assembled before it crashed (perhaps while storage was
            # still removing the parts, which must not read as parts lost).
            info = await self._existing_object(key)
            if info is None:
                info = await self._complete_parts(doc)
            else:
                await self._drop_parts(key, multipart_id)
            if info.size != int(doc["size"]):
                log.error("assembled_size_wrong", upload_id=doc["_id"], size=info.size)
                raise InternalError()
            # See the module docstring: the local adapter hashed while concatenating.
            sha256 = info.sha256 or await self._hash_object(key)
        except ObjectsError as exc:
            log.warning("storage_failed", step="complete", error=str(exc))
            raise StorageUnavailable() from exc
        assembled = await self._repo.transition(
            doc["account_id"],
            doc["_id"],
            from_status=COMPLETING,
            to_status=ASSEMBLED,
            now=self._clock(),
            set_fields={
                "sha256": sha256,
                "object_etag": info.etag,
                "event_id": video_uploaded_event_id(doc["video_id"]),
            },
            unset_fields=("parts",),
        )
        return assembled if assembled is not None else await self._reload(doc)

    async def _complete_parts(self, doc: Doc) -> ObjectInfo:
        """Returns the object the store made of the upload's parts, after checking that each
        stored part is a version the client was told was received (else back to open, 409)."""
        key, multipart_id = doc["source_key"], doc["multipart_id"]
        try:
            stored = await self._objects.list_parts(key, multipart_id)
        except MultipartNotFound:
            return await self._assembled_object(doc)
        bad = self._mismatched(doc, stored)
        if bad:
            await self._reopen(doc, drop=bad)
            raise _incomplete(bad, "their stored parts were lost or replaced")
        # The versions storage kept (each one the client was told was received).
        kept = {p.part_number: p.etag for p in stored}
        parts = [
            PartInfo(i + 1, kept[i + 1], chunk_length(doc, i))
            for i in range(int(doc["total_chunks"]))
        ]
        try:
            return await self._objects.complete_multipart(key, multipart_id, parts)
        except MultipartNotFound:
            # Completed by another call for this upload that ran at the same time.
            return await self._assembled_object(doc)
        except InvalidPart:
            # A chunk was re-sent with other bytes while we were checking.
            bad = self._mismatched(doc, await self._objects.list_parts(key, multipart_id))
            await self._reopen(doc, drop=bad)
            raise _incomplete(bad, "their stored parts were replaced") from None

    async def _existing_object(self, key: str) -> ObjectInfo | None:
        try:
            return await self._objects.stat(key)
        except ObjectNotFound:
            return None

    async def _drop_parts(self, key: str, multipart_id: str) -> None:
        """Removes what is left of a completed multipart upload (best effort: the sweeper's
        cleanup of abandoned uploads does not see it, but nothing reads it either)."""
        with anyio.CancelScope(shield=True):
            try:
                await self._objects.abort_multipart(key, multipart_id)
            except ObjectsError as exc:
                log.warning("cleanup_failed", step="complete", error=str(exc))

    async def _assembled_object(self, doc: Doc) -> ObjectInfo:
        """Returns the object a previous attempt completed (its multipart upload is gone).
        If there is none, storage dropped the parts: a fresh multipart upload replaces the
        old one and every chunk is missing again (409)."""
        try:
            return await self._objects.stat(doc["source_key"])
        except ObjectNotFound:
            pass
        log.error("multipart_upload_lost", upload_id=doc["_id"])
        multipart_id = await self._objects.create_multipart(
            doc["source_key"],
            content_type=doc.get("content_type") or "application/octet-stream",
            part_size=int(doc["chunk_size"]),
        )
        everything = list(range(int(doc["total_chunks"])))
        await self._reopen(
            doc, drop=everything, set_fields={"multipart_id": multipart_id, "parts": {}}
        )
        raise _incomplete(everything, "storage lost the parts")

    async def _hash_object(self, key: str) -> str:
        """Returns the SHA-256 of a stored object, read once, streamed (stores that did not
        see the bytes in order, i.e. S3 after a server-side multipart complete)."""
        digest = hashlib.sha256()
        async with await self._objects.get(key) as reader:
            async for chunk in reader:
                await hash_update(digest, chunk)
        return digest.hexdigest()

    async def _register(self, doc: Doc, caller: Caller) -> Doc:
        """`assembled` -> `registered`: media creates the video (idempotent on upload id)."""
        answer = await self._media.register(
            caller,
            RegisterVideo(
                video_id=doc["video_id"],
                upload_id=doc["_id"],
                filename=doc["filename"],
                title=doc.get("title"),
                size_bytes=int(doc["size"]),
                sha256=doc["sha256"],
                source_key=doc["source_key"],
            ),
        )
        registered = await self._repo.transition(
            doc["account_id"],
            doc["_id"],
            from_status=ASSEMBLED,
            to_status=REGISTERED,
            now=self._clock(),
            set_fields={"embed_token": answer.embed_token, "video_status": answer.status},
        )
        return registered if registered is not None else await self._reload(doc)

    async def _publish(self, doc: Doc, caller: Caller) -> Doc:
        """`registered` -> `completed`: publishes `video.uploaded` (always with the event id
        recorded at `assembled`, so a repeat is a duplicate consumers drop)."""
        payload = VideoUploaded(
            video_id=doc["video_id"],
            upload_id=doc["_id"],
            filename=doc["filename"],
            title=doc.get("title"),
            size_bytes=int(doc["size"]),
            sha256=doc["sha256"],
            source_key=doc["source_key"],
        )
        event = Event.of(
            payload, account_id=doc["account_id"], request_id=caller.request_id
        ).model_copy(update={"id": doc["event_id"]})
        try:
            await self._bus.publish(event)
        except BusError as exc:
            log.warning("publish_failed", upload_id=doc["_id"], error=str(exc))
            raise StorageUnavailable(
                "The upload is stored but its event could not be published yet; retry the "
                "same request."
            ) from exc
        now = self._clock()
        completed = await self._repo.transition(
            doc["account_id"],
            doc["_id"],
            from_status=REGISTERED,
            to_status=COMPLETED,
            now=now,
            set_fields={"completed_at": now, "purge_at": self._purge_at(now)},
        )
        if completed is not None:
            log.info("upload_completed", upload_id=doc["_id"], video_id=doc["video_id"])
            return completed
        return await self._reload(doc)

    # -- direct upload -----------------------------------------------------------------------

    async def direct_upload(
        self,
        caller: Caller,
        *,
        content_type: str | None,
        content_length: str | None,
        body: AsyncIterable[bytes],
    ) -> VideoCreated:
        """Returns the video made of a multipart/form-data upload, streamed into storage."""
        limit = self._settings.direct_max_bytes
        boundary = form_boundary(content_type)
        if boundary is None:
            raise NotMultipart()

        def too_large() -> AppError:
            return DirectUploadTooLarge(
                f"Direct uploads take files up to {limit} bytes; use the chunked upload "
                "(POST /api/v1/upload/init, then /api/v1/upload/chunk and "
                "/api/v1/upload/complete) for bigger files.",
                details={"max_bytes": limit, "chunked_upload": "/api/v1/upload/init"},
            )

        declared = parse_content_length(content_length)
        if declared is not None and declared > limit + FORM_OVERHEAD_BYTES:
            raise too_large()
        now = self._clock()
        upload_id, video_id = new_id("upl"), new_id("vid")
        key = source_key(video_id)
        doc: Doc = {
            "_id": upload_id,
            "account_id": caller.account_id,
            "kind": _DIRECT,
            "status": RECEIVING,
            "video_id": video_id,
            "source_key": key,
            "created_at": now,
            "updated_at": now,
            # Not finished by then (the process died mid-body): the sweeper removes the rest.
            "expires_at": now + timedelta(seconds=self._settings.expiry_seconds),
            "caller_plan": caller.plan,
            "caller_api_preview": caller.api_preview,
            "complete_request_id": caller.request_id,
        }
        await self._repo.insert(doc)
        tally = Measured()
        try:
            filename, title, info = await self._receive_form(body, boundary, key, tally, too_large)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._fail_direct(doc)
            self._metrics.complete(_DIRECT, "rejected" if isinstance(exc, AppError) else "error")
            if isinstance(exc, ObjectsError):
                log.warning("storage_failed", step="put", error=str(exc))
                raise StorageUnavailable() from exc
            raise
        if info.sha256 is not None and info.sha256 != tally.sha256:
            log.error("direct_upload_hash_differs", upload_id=upload_id)
            raise InternalError()
        self._metrics.stored("direct", info.size)
        assembled = await self._repo.transition(
            caller.account_id,
            upload_id,
            from_status=RECEIVING,
            to_status=ASSEMBLED,
            now=self._clock(),
            set_fields={
                "filename": filename,
                "title": title,
                "size": info.size,
                "sha256": tally.sha256,
                "object_etag": info.etag,
                "event_id": video_uploaded_event_id(video_id),
            },
        )
        if assembled is None:  # expired by the sweeper while receiving (a day-long body)
            with anyio.CancelScope(shield=True), suppress(ObjectsError):
                await self._objects.delete(key)
            raise UploadExpired("The upload took too long and expired; send it again.")
        log.info("direct_upload_stored", upload_id=upload_id, size=info.size)
        return await self._drive(assembled, caller)

    async def _receive_form(
        self,
        body: AsyncIterable[bytes],
        boundary: bytes,
        key: str,
        tally: Measured,
        too_large: Callable[[], AppError],
    ) -> tuple[str, str, ObjectInfo]:
        """Returns (filename, title, stored object) after streaming the form's `file` field
        to `key` as it arrives (the `title` field may come before or after it)."""
        form = FormReader(body, boundary)
        filename: str | None = None
        raw_title: str | None = None
        info: ObjectInfo | None = None
        while (part := await form.next_part()) is not None:
            if part.name == "file":
                if info is not None:
                    raise InvalidForm("The form has more than one `file` field.")
                if part.filename is None:
                    raise InvalidFilename("The `file` field needs a filename (curl -F file=@x).")
                filename = check_filename(part.filename)
                stream = measured(
                    form.part_data(),
                    tally,
                    max_bytes=self._settings.direct_max_bytes,
                    too_large=too_large,
                )
                info = await self._objects.put(
                    key, stream, content_type=part.content_type or _content_type_of(filename)
                )
            elif part.name == "title":
                try:
                    raw = await read_limited(form.part_data(), limit=_TITLE_FIELD_LIMIT)
                    raw_title = raw.decode("utf-8")
                except (AppError, UnicodeDecodeError):
                    raise InvalidTitle() from None
            else:
                async for _ in form.part_data():  # other fields are ignored
                    pass
        if info is None or filename is None:
            raise InvalidForm("The form has no `file` field.")
        if info.size == 0:
            raise InvalidSize("The file is empty.")
        return filename, check_title(raw_title, filename), info

    async def _fail_direct(self, doc: Doc) -> None:
        now = self._clock()
        failed = await self._repo.transition(
            doc["account_id"],
            doc["_id"],
            from_status=RECEIVING,
            to_status=FAILED,
            now=now,
            set_fields={"cleanup_pending": True, "purge_at": self._purge_at(now)},
        )
        if failed is not None:
            await self._cleanup(failed)

    # -- sweeper -----------------------------------------------------------------------------

    async def sweep(self) -> SweepReport:
        """Returns what one pass did: expire overdue uploads (removing their parts), retry
        failed cleanups, and finish completions whose process died."""
        report = SweepReport()
        now = self._clock()
        while True:
            batch = await self._repo.sweeper_expired(now, limit=_SWEEP_BATCH)
            for doc in batch:
                report.expired += await self._expire(doc)
            if len(batch) < _SWEEP_BATCH:
                break
        for doc in await self._repo.sweeper_cleanup(now - _CLEANUP_RETRY, limit=_SWEEP_BATCH):
            report.cleaned += await self._cleanup(doc)
        stalled_before = now - timedelta(seconds=self._settings.redrive_after_seconds)
        for doc in await self._repo.sweeper_stalled(stalled_before, limit=_SWEEP_BATCH):
            await self._repo.touch(doc["account_id"], doc["_id"], status=doc["status"], now=now)
            try:
                await self._drive(doc, caller_of(doc))
            except UploadIncomplete:
                report.reopened += 1
                self._metrics.redriven.labels(self._metrics.service, "reopened").inc()
            except Exception as exc:
                report.failed += 1
                self._metrics.redriven.labels(self._metrics.service, "error").inc()
                log.warning("redrive_failed", upload_id=doc["_id"], error=str(exc))
            else:
                report.redriven += 1
                self._metrics.redriven.labels(self._metrics.service, "completed").inc()
                log.info("redrive_completed", upload_id=doc["_id"])
        return report
