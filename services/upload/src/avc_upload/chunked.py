"""Chunked uploads: init, one chunk, status, abort, complete (the handler side of tusd's split;
the store side is `avc_common.objects`). Routes parse HTTP and hand typed values in here.

Where the bytes go: a chunked upload is one multipart upload of the object store, started at
`init` on the final key `sources/<video_id>/original` (S3 binds a multipart upload to its key,
which is why the video id is chosen at `init`). Chunk `i` is streamed straight into part `i+1`;
`complete` asks the store to concatenate the parts. Nothing is buffered whole and nothing is
spooled to a temp file here. With a store that has the `PlacedParts` capability each chunk is
written at its final offset and `complete` is a rename (docs/storage.md).

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
cannot be handed between requests or processes). A store with `StoredDigests` (local) hashes in
the background as chunks land and keeps the hash with the object, so `complete` asks it; with
any other store (S3 concatenates on its side) the completed object is read once, streamed.
"""

from __future__ import annotations

import mimetypes
from collections.abc import AsyncIterable
from contextlib import suppress
from datetime import timedelta
from typing import Final

import anyio

from avc_common.errors import AppError, InternalError
from avc_common.ids import is_id, new_id
from avc_common.internal_auth import Caller
from avc_common.logging import get_logger
from avc_common.objects import MultipartNotFound, ObjectsError, SizeMismatch
from avc_common.objects.base import normalize_etag
from avc_upload.completion import Completion, UploadContext, answer, incomplete, source_key
from avc_upload.config import MIB
from avc_upload.errors import (
    ChecksumMismatch,
    ChunkOutOfRange,
    ChunkSizeMismatch,
    FileTooLarge,
    StorageUnavailable,
    TooManyOpenUploads,
    UploadCompleted,
    UploadExpired,
    UploadNotFound,
)
from avc_upload.repository import IN_COMPLETION, Upload, UploadKind, UploadStatus
from avc_upload.schemas import (
    ChunkResponse,
    InitRequest,
    InitResponse,
    UploadStatusResponse,
    VideoCreated,
)
from avc_upload.schemas import UploadStatus as PublicStatus
from avc_upload.streams import checked_chunk

log = get_logger(__name__)

CHUNK_SIZE: Final = 5 * MIB
MAX_CHUNKS: Final = 10_000
OPEN: Final = UploadStatus.OPEN


def plan_chunks(size: int) -> tuple[int, int]:
    """Returns (chunk_size, total_chunks): 5 MiB chunks unless that needs more than 10,000,
    then the smallest whole number of MiB that fits (API.md)."""
    chunk = CHUNK_SIZE
    if -(-size // chunk) > MAX_CHUNKS:
        chunk = -(-size // (MAX_CHUNKS * MIB)) * MIB
    return chunk, -(-size // chunk)


def content_type_of(filename: str) -> str:
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    return guessed or "application/octet-stream"


def _public_status(status: UploadStatus) -> PublicStatus:
    if status is UploadStatus.COMPLETED:
        return "completed"
    if status in IN_COMPLETION:
        return "completing"
    return "open"


def _not_open(upload: Upload | None) -> AppError:
    """Returns the error for a chunk sent to an upload that is not open."""
    status = upload.status if upload is not None else None
    if status is UploadStatus.COMPLETED:
        return UploadCompleted("This upload is already completed; it takes no more chunks.")
    if status in IN_COMPLETION:
        return UploadCompleted(
            "This upload is being completed; it takes no more chunks. Call complete again "
            "to get its result."
        )
    if status is UploadStatus.EXPIRED:
        return UploadExpired()
    return UploadNotFound()


class ChunkedUploads:
    def __init__(self, ctx: UploadContext, completion: Completion) -> None:
        self._ctx = ctx
        self._completion = completion

    # -- init --------------------------------------------------------------------------------

    async def init_upload(self, caller: Caller, request: InitRequest) -> InitResponse:
        """Returns a new chunked upload's id, chunk plan and expiry."""
        ctx = self._ctx
        limit = ctx.settings.max_file_bytes
        if request.size > limit:
            raise FileTooLarge(
                f"The file is {request.size} bytes; uploads may be at most {limit} bytes.",
                details={"max_bytes": limit},
            )
        now = ctx.clock()
        cap = ctx.settings.max_open_uploads
        if await ctx.repo.count_open(caller.account_id, now) >= cap:
            raise TooManyOpenUploads(
                f"This account already has {cap} chunked uploads open; complete or abort some "
                "(DELETE /api/v1/upload/:upload_id) before starting another.",
                details={"max_open_uploads": cap},
            )
        chunk_size, total = plan_chunks(request.size)
        upload_id, video_id = new_id("upl"), new_id("vid")
        key = source_key(video_id)
        content_type = content_type_of(request.filename)
        try:
            # Chunk i is part i+1, every one but the last exactly chunk_size long.
            multipart_id = await ctx.create_multipart(
                key, content_type=content_type, part_size=chunk_size
            )
        except ObjectsError as exc:
            log.warning("storage_failed", step="create_multipart", error=str(exc))
            raise StorageUnavailable() from exc
        expires_at = now + timedelta(seconds=ctx.settings.expiry_seconds)
        upload = Upload(
            id=upload_id,
            account_id=caller.account_id,
            kind=UploadKind.CHUNKED,
            status=OPEN,
            video_id=video_id,
            source_key=key,
            created_at=now,
            updated_at=now,
            expires_at=expires_at,
            filename=request.filename,
            title=request.title,
            content_type=content_type,
            size=request.size,
            chunk_size=chunk_size,
            total_chunks=total,
            multipart_id=multipart_id,
            init_request_id=caller.request_id,
        )
        try:
            await ctx.repo.insert(upload)
        except BaseException:
            with anyio.CancelScope(shield=True), suppress(ObjectsError):
                await ctx.objects.abort_multipart(key, multipart_id)
            raise
        log.info("upload_started", upload_id=upload_id, size=request.size, total_chunks=total)
        return InitResponse(
            upload_id=upload_id, chunk_size=chunk_size, total_chunks=total, expires_at=expires_at
        )

    # -- loading -----------------------------------------------------------------------------

    async def load(self, caller: Caller, upload_id: str) -> Upload:
        """Returns the caller's chunked upload; raises 404 (unknown, another account's,
        aborted) or 410 (expired, expiring it now if the sweeper has not yet)."""
        if not is_id(upload_id, "upl"):
            raise UploadNotFound()
        upload = await self._ctx.repo.get(caller.account_id, upload_id)
        if (
            upload is None
            or upload.kind is not UploadKind.CHUNKED
            or upload.status in (UploadStatus.ABORTED, UploadStatus.FAILED)
        ):
            raise UploadNotFound()
        if upload.status is UploadStatus.EXPIRED:
            raise UploadExpired()
        if upload.status is OPEN and upload.expires_at <= self._ctx.clock():
            await self._completion.expire(upload)
            raise UploadExpired()
        return upload

    # -- chunks ------------------------------------------------------------------------------

    async def put_chunk(
        self,
        caller: Caller,
        upload_id: str,
        index: int,
        sha256: str | None,
        length: int | None,
        body: AsyncIterable[bytes],
    ) -> ChunkResponse:
        """Returns the upload's progress after storing one chunk as its multipart part.
        `sha256` (lowercase hex) is checked when given; `length` is the declared body length
        (None when the body is sent without one)."""
        metrics = self._ctx.metrics
        try:
            result = await self._put_chunk(caller, upload_id, index, sha256, length, body)
        except ChecksumMismatch:
            metrics.chunk("checksum_mismatch")
            raise
        except ChunkSizeMismatch:
            metrics.chunk("size_mismatch")
            raise
        except AppError as exc:
            metrics.chunk("rejected" if exc.status < 500 else "error")
            raise
        metrics.chunk("ok")
        return result

    async def _put_chunk(
        self,
        caller: Caller,
        upload_id: str,
        index: int,
        sha256: str | None,
        length: int | None,
        body: AsyncIterable[bytes],
    ) -> ChunkResponse:
        ctx = self._ctx
        upload = await self.load(caller, upload_id)
        if upload.status is not OPEN:
            raise _not_open(upload)
        total = upload.chunks
        if not 0 <= index < total:
            raise ChunkOutOfRange(
                f"Chunk index {index} is outside 0..{total - 1} for this upload.",
                details={"total_chunks": total},
            )
        expected = upload.chunk_length(index)
        if length is not None and length != expected:
            # Refused before reading a byte of the body.
            raise ChunkSizeMismatch(
                f"Chunk {index} must be {expected} bytes; Content-Length says {length}.",
                details={"expected_bytes": expected, "received_bytes": length},
            )
        stream = checked_chunk(body, index=index, expected=expected, sha256=sha256)
        try:
            part = await ctx.objects.put_part(
                upload.source_key, upload.multipart_id or "", index + 1, stream, size=expected
            )
        except SizeMismatch as exc:  # the stream checks first; kept for safety
            raise ChunkSizeMismatch(f"Chunk {index} must be {expected} bytes.") from exc
        except MultipartNotFound as exc:
            # Aborted, expired or completed while this chunk was streaming.
            fresh = await ctx.repo.get(caller.account_id, upload_id)
            if fresh is not None and fresh.status is OPEN:
                log.error("multipart_upload_lost", upload_id=upload_id)
                raise StorageUnavailable() from exc
            raise _not_open(fresh) from exc
        except ObjectsError as exc:
            log.warning("storage_failed", step="put_part", error=str(exc))
            raise StorageUnavailable() from exc
        updated = await ctx.repo.record_part(
            caller.account_id,
            upload_id,
            index,
            etag=normalize_etag(part.etag),
            size=part.size,
            now=ctx.clock(),
        )
        if updated is None:
            # Not open any more: a complete, abort or expiry won the race. The stored part is
            # harmless (complete takes only versions recorded as accepted; abort/expiry drop
            # every part).
            raise _not_open(await ctx.repo.get(caller.account_id, upload_id))
        ctx.metrics.stored("chunk", expected)
        return ChunkResponse(
            upload_id=upload_id,
            chunk_index=index,
            received_chunks=len(updated.received),
            total_chunks=total,
        )

    # -- status and abort --------------------------------------------------------------------

    async def status(self, caller: Caller, upload_id: str) -> UploadStatusResponse:
        """Returns what a client needs to resume: which chunks arrived and which are missing."""
        upload = await self.load(caller, upload_id)
        return UploadStatusResponse(
            upload_id=upload.id,
            status=_public_status(upload.status),
            filename=upload.filename or "",
            size=upload.size or 0,
            chunk_size=upload.chunk_size or 0,
            total_chunks=upload.chunks,
            received=sorted(upload.received),
            missing=upload.missing(),
            expires_at=upload.expires_at,
            video_id=upload.video_id if upload.status is UploadStatus.COMPLETED else None,
        )

    async def abort(self, caller: Caller, upload_id: str) -> None:
        """Aborts an open upload and removes its parts (again for an aborted one: idempotent)."""
        if not is_id(upload_id, "upl"):
            raise UploadNotFound()
        ctx = self._ctx
        for _ in range(3):
            upload = await ctx.repo.get(caller.account_id, upload_id)
            if (
                upload is None
                or upload.kind is not UploadKind.CHUNKED
                or upload.status is UploadStatus.FAILED
            ):
                raise UploadNotFound()
            status = upload.status
            if status is UploadStatus.ABORTED:
                await self._completion.cleanup(upload)
                return
            if status is UploadStatus.EXPIRED:
                raise UploadExpired()
            if status is UploadStatus.COMPLETED or status in IN_COMPLETION:
                raise UploadCompleted(
                    "This upload is completed (or being completed) and cannot be aborted; "
                    "delete the video instead."
                )
            now = ctx.clock()
            aborted = await ctx.repo.abort(
                caller.account_id, upload_id, now=now, purge_at=ctx.purge_at(now)
            )
            if aborted is not None:
                log.info("upload_aborted", upload_id=upload_id)
                await self._completion.cleanup(aborted, strict=True)
                return
        raise InternalError()  # pragma: no cover - the record kept changing under us

    # -- complete ----------------------------------------------------------------------------

    async def complete(self, caller: Caller, upload_id: str) -> VideoCreated:
        """Returns the video made of the upload's chunks; the same answer on every call."""
        ctx = self._ctx
        for _ in range(3):
            upload = await self.load(caller, upload_id)
            status = upload.status
            if status is UploadStatus.COMPLETED:
                ctx.metrics.complete(UploadKind.CHUNKED, "repeated")
                return answer(upload)
            if status in IN_COMPLETION:
                # Interrupted (or running in another request): carry on from where it is.
                await ctx.repo.touch(caller.account_id, upload_id, status=status, now=ctx.clock())
                return await self._completion.drive(upload, caller)
            missing = upload.missing()
            if missing:
                ctx.metrics.complete(UploadKind.CHUNKED, "incomplete")
                raise incomplete(missing)
            started = await ctx.repo.start_completion(
                caller.account_id, upload_id, caller, ctx.clock()
            )
            if started is not None:
                return await self._completion.drive(started, caller)
            # Changed under us (a chunk, another complete, expiry): look again.
        raise InternalError()  # pragma: no cover
