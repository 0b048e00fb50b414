"""What chunked and direct uploads share once the bytes are stored: taking a record from its
state to `completed` (assemble -> register with media -> publish `video.uploaded`), and removing
the storage of an upload that ended without a video (abort, expiry, a failed direct upload).

The dependencies every part of the service uses are gathered in `UploadContext`; the store's
optional capabilities (`avc_common.objects.capabilities`) are looked up there once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import anyio

from avc_common.bus import Bus, BusError
from avc_common.errors import InternalError
from avc_common.events import Event, VideoUploaded, video_uploaded_event_id
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
)
from avc_common.objects.base import normalize_etag
from avc_common.objects.capabilities import (
    PlacedParts,
    StoredDigests,
    placed_parts,
    stored_digests,
)
from avc_common.timeutil import utcnow
from avc_upload.config import UploadSettings
from avc_upload.errors import StorageUnavailable, UploadIncomplete, UploadNotFound
from avc_upload.media import MediaClient, RegisterVideo
from avc_upload.metrics import UploadMetrics
from avc_upload.repository import Assembled, Upload, UploadKind, UploadRepository, UploadStatus
from avc_upload.schemas import VideoCreated
from avc_upload.streams import hash_update

log = get_logger(__name__)


def source_key(video_id: str) -> str:
    """Returns the object key of a video's original file."""
    return f"sources/{video_id}/original"


def incomplete(missing: list[int], reason: str = "") -> UploadIncomplete:
    count = len(missing)
    chunks = "chunk is" if count == 1 else "chunks are"
    why = f" ({reason})" if reason else ""
    return UploadIncomplete(
        f"{count} {chunks} missing{why}; send them, then call complete again.",
        details={"missing": missing},
    )


def answer(upload: Upload) -> VideoCreated:
    if upload.embed_token is None:
        raise InternalError()
    return VideoCreated(
        video_id=upload.video_id,
        embed_token=upload.embed_token,
        status=upload.video_status or "processing",
    )


@dataclass
class UploadContext:
    """The upload service's dependencies, and the store's optional capabilities (None when the
    store lacks them: then chunks are parts like any other and the SHA-256 is read back)."""

    repo: UploadRepository
    objects: ObjectStore
    bus: Bus
    media: MediaClient
    settings: UploadSettings
    metrics: UploadMetrics
    clock: Callable[[], datetime] = utcnow
    placed: PlacedParts | None = field(init=False)
    digests: StoredDigests | None = field(init=False)

    def __post_init__(self) -> None:
        self.placed = placed_parts(self.objects)
        self.digests = stored_digests(self.objects)

    def purge_at(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.settings.record_retention_seconds)

    async def create_multipart(self, key: str, *, content_type: str, part_size: int) -> str:
        """Returns a new multipart upload of `key` whose parts are `part_size` long (placed
        where they end up when the store can)."""
        if self.placed is not None:
            return await self.placed.create_placed_multipart(
                key, content_type=content_type, part_size=part_size
            )
        return await self.objects.create_multipart(key, content_type=content_type)

    async def known_sha256(self, key: str) -> str | None:
        """Returns the SHA-256 the store recorded for `key`, if it keeps them."""
        return None if self.digests is None else await self.digests.stored_sha256(key)

    async def reload(self, upload: Upload) -> Upload:
        fresh = await self.repo.get(upload.account_id, upload.id)
        if fresh is None:
            raise UploadNotFound()
        return fresh


class Completion:
    """Drives a record to `completed` and cleans up after uploads that ended without one."""

    def __init__(self, ctx: UploadContext) -> None:
        self._ctx = ctx

    async def drive(self, upload: Upload, caller: Caller) -> VideoCreated:
        """Returns the answer after taking the record from its state to `completed`."""
        metrics = self._ctx.metrics
        try:
            if upload.status is UploadStatus.COMPLETING:
                upload = await self._assemble(upload)
            if upload.status is UploadStatus.ASSEMBLED:
                upload = await self._register(upload, caller)
            if upload.status is UploadStatus.REGISTERED:
                upload = await self._publish(upload, caller)
        except UploadIncomplete:
            metrics.complete(upload.kind, "incomplete")
            raise
        except BaseException:
            metrics.complete(upload.kind, "error")
            raise
        if upload.status is not UploadStatus.COMPLETED:
            log.error("completion_left_unfinished", upload_id=upload.id, status=upload.status)
            raise InternalError()
        metrics.complete(upload.kind, "completed")
        return answer(upload)

    async def reopen(
        self, upload: Upload, *, drop: list[int], new_multipart_id: str | None = None
    ) -> None:
        """Puts a completing upload back to `open`, forgetting the chunks in `drop`."""
        await self._ctx.repo.reopen(
            upload, drop=drop, now=self._ctx.clock(), new_multipart_id=new_multipart_id
        )

    # -- completing -> assembled ----------------------------------------------------------------

    async def _assemble(self, upload: Upload) -> Upload:
        """`completing` -> `assembled`: checks every part against the recorded versions, has the
        store complete the object and records its SHA-256 (and the event id to publish)."""
        missing = upload.missing()
        if missing:
            await self.reopen(upload, drop=[])
            raise incomplete(missing)
        key, multipart_id = upload.source_key, upload.multipart_id or ""
        try:
            # The key is this upload's alone and only `complete` writes it: an object there is
            # what a previous attempt assembled before it crashed (perhaps while storage was
            # still removing the parts, which must not read as parts lost).
            info = await self._existing_object(key)
            if info is None:
                info = await self._complete_parts(upload)
            else:
                await self._drop_parts(key, multipart_id)
            if info.size != upload.size:
                log.error("assembled_size_wrong", upload_id=upload.id, size=info.size)
                raise InternalError()
            # A store with StoredDigests hashed while the parts landed; others are read once.
            sha256 = await self._ctx.known_sha256(key) or await self._hash_object(key)
        except ObjectsError as exc:
            log.warning("storage_failed", step="complete", error=str(exc))
            raise StorageUnavailable() from exc
        assembled = await self._ctx.repo.assembled(
            upload,
            Assembled(
                sha256=sha256,
                object_etag=info.etag,
                event_id=video_uploaded_event_id(upload.video_id),
            ),
            self._ctx.clock(),
        )
        return assembled if assembled is not None else await self._ctx.reload(upload)

    async def _complete_parts(self, upload: Upload) -> ObjectInfo:
        """Returns the object the store made of the upload's parts, after checking that each
        stored part is a version the client was told was received (else back to open, 409)."""
        objects = self._ctx.objects
        key, multipart_id = upload.source_key, upload.multipart_id or ""
        try:
            stored = await objects.list_parts(key, multipart_id)
        except MultipartNotFound:
            return await self._assembled_object(upload)
        bad = mismatched(upload, stored)
        if bad:
            await self.reopen(upload, drop=bad)
            raise incomplete(bad, "their stored parts were lost or replaced")
        # The versions storage kept (each one the client was told was received).
        kept = {p.part_number: p.etag for p in stored}
        parts = [PartInfo(i + 1, kept[i + 1], upload.chunk_length(i)) for i in range(upload.chunks)]
        try:
            return await objects.complete_multipart(key, multipart_id, parts)
        except MultipartNotFound:
            # Completed by another call for this upload that ran at the same time.
            return await self._assembled_object(upload)
        except InvalidPart:
            # A chunk was re-sent with other bytes while we were checking.
            bad = mismatched(upload, await objects.list_parts(key, multipart_id))
            await self.reopen(upload, drop=bad)
            raise incomplete(bad, "their stored parts were replaced") from None

    async def _existing_object(self, key: str) -> ObjectInfo | None:
        try:
            return await self._ctx.objects.stat(key)
        except ObjectNotFound:
            return None

    async def _drop_parts(self, key: str, multipart_id: str) -> None:
        """Removes what is left of a completed multipart upload (best effort: the sweeper's
        cleanup of abandoned uploads does not see it, but nothing reads it either)."""
        with anyio.CancelScope(shield=True):
            try:
                await self._ctx.objects.abort_multipart(key, multipart_id)
            except ObjectsError as exc:
                log.warning("cleanup_failed", step="complete", error=str(exc))

    async def _assembled_object(self, upload: Upload) -> ObjectInfo:
        """Returns the object a previous attempt completed (its multipart upload is gone).
        If there is none, storage dropped the parts: a fresh multipart upload replaces the
        old one and every chunk is missing again (409)."""
        try:
            return await self._ctx.objects.stat(upload.source_key)
        except ObjectNotFound:
            pass
        log.error("multipart_upload_lost", upload_id=upload.id)
        multipart_id = await self._ctx.create_multipart(
            upload.source_key,
            content_type=upload.content_type or "application/octet-stream",
            part_size=upload.chunk_size or 1,
        )
        everything = list(range(upload.chunks))
        await self.reopen(upload, drop=everything, new_multipart_id=multipart_id)
        raise incomplete(everything, "storage lost the parts")

    async def _hash_object(self, key: str) -> str:
        """Returns the SHA-256 of a stored object, read once, streamed (stores that did not
        see the bytes in order, i.e. S3 after a server-side multipart complete)."""
        digest = hashlib.sha256()
        async with await self._ctx.objects.get(key) as reader:
            async for chunk in reader:
                await hash_update(digest, chunk)
        return digest.hexdigest()

    # -- assembled -> registered -> completed ---------------------------------------------------

    async def _register(self, upload: Upload, caller: Caller) -> Upload:
        """`assembled` -> `registered`: media creates the video (idempotent on upload id)."""
        registered_video = await self._ctx.media.register(
            caller,
            RegisterVideo(
                video_id=upload.video_id,
                upload_id=upload.id,
                filename=upload.filename or "",
                title=upload.title,
                size_bytes=upload.size or 0,
                sha256=upload.sha256 or "",
                source_key=upload.source_key,
            ),
        )
        registered = await self._ctx.repo.registered(
            upload,
            embed_token=registered_video.embed_token,
            video_status=registered_video.status,
            now=self._ctx.clock(),
        )
        return registered if registered is not None else await self._ctx.reload(upload)

    async def _publish(self, upload: Upload, caller: Caller) -> Upload:
        """`registered` -> `completed`: publishes `video.uploaded` (always with the event id
        recorded at `assembled`, so a repeat is a duplicate consumers drop)."""
        payload = VideoUploaded(
            video_id=upload.video_id,
            upload_id=upload.id,
            filename=upload.filename or "",
            title=upload.title,
            size_bytes=upload.size or 0,
            sha256=upload.sha256 or "",
            source_key=upload.source_key,
        )
        event = Event.of(
            payload, account_id=upload.account_id, request_id=caller.request_id
        ).model_copy(update={"id": upload.event_id})
        try:
            await self._ctx.bus.publish(event)
        except BusError as exc:
            log.warning("publish_failed", upload_id=upload.id, error=str(exc))
            raise StorageUnavailable(
                "The upload is stored but its event could not be published yet; retry the "
                "same request."
            ) from exc
        now = self._ctx.clock()
        completed = await self._ctx.repo.completed(
            upload, now=now, purge_at=self._ctx.purge_at(now)
        )
        if completed is not None:
            log.info("upload_completed", upload_id=upload.id, video_id=upload.video_id)
            return completed
        return await self._ctx.reload(upload)

    # -- ended uploads --------------------------------------------------------------------------

    async def cleanup(self, upload: Upload, *, strict: bool = False) -> bool:
        """Returns whether the storage left by an aborted, expired or failed upload is gone
        (the multipart upload and its parts; a half-stored direct upload). When the store
        fails, the sweeper retries later; `strict` also raises 503 to the caller."""
        objects = self._ctx.objects
        try:
            if upload.kind is UploadKind.CHUNKED and upload.multipart_id:
                await objects.abort_multipart(upload.source_key, upload.multipart_id)
            # An ended upload never registered a video, so an object at its key (a direct
            # upload's half, or a chunked one assembled by a complete that then went back to
            # open) is nobody's.
            await objects.delete(upload.source_key)
        except ObjectsError as exc:
            log.warning("cleanup_failed", upload_id=upload.id, error=str(exc))
            if strict:
                raise StorageUnavailable() from exc
            return False
        await self._ctx.repo.cleaned(upload, self._ctx.clock())
        return True

    async def expire(self, upload: Upload) -> bool:
        """Returns whether this call expired the upload (and removed its storage)."""
        now = self._ctx.clock()
        expired = await self._ctx.repo.expire(
            upload.account_id, upload.id, now=now, purge_at=self._ctx.purge_at(now)
        )
        if expired is None:
            return False
        self._ctx.metrics.expired.labels(self._ctx.metrics.service).inc()
        log.info("upload_expired", upload_id=upload.id, kind=upload.kind)
        await self.cleanup(expired)
        return True


def mismatched(upload: Upload, stored: list[PartInfo]) -> list[int]:
    """Returns the chunks whose stored part is not a version the client was told was received
    (lost, or replaced by a request that failed after storing its bytes)."""
    by_number = {p.part_number: p for p in stored}
    bad = []
    for index in range(upload.chunks):
        entry = upload.parts.get(index)
        part = by_number.get(index + 1)
        if (
            entry is None
            or part is None
            or normalize_etag(part.etag) not in entry.accepted
            or part.size != upload.chunk_length(index)
        ):
            bad.append(index)
    return bad
