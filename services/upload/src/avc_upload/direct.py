"""The direct upload (`POST /api/v1/upload`, a multipart/form-data form): the `file` field is
streamed into storage as it arrives (hashed on the way, as it comes in order), then the record
joins the chunked path at `assembled` (completion.py). The route checks the Content-Type and
the declared length and hands in a `FormReader` over the body.

A record is written in `receiving` before a byte is stored, so a process killed mid-body leaves
something the sweeper finds and cleans up when it expires.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from datetime import timedelta
from typing import Final

import anyio

from avc_common.errors import AppError, InternalError
from avc_common.events import video_uploaded_event_id
from avc_common.ids import new_id
from avc_common.internal_auth import Caller
from avc_common.logging import get_logger
from avc_common.objects import ObjectInfo, ObjectsError
from avc_upload.chunked import content_type_of
from avc_upload.completion import Completion, UploadContext, source_key
from avc_upload.errors import (
    DirectUploadTooLarge,
    InvalidFilename,
    InvalidForm,
    InvalidSize,
    InvalidTitle,
    StorageUnavailable,
    UploadExpired,
)
from avc_upload.repository import Assembled, Upload, UploadKind, UploadStatus
from avc_upload.schemas import MAX_TITLE_CHARS, VideoCreated, title_or_default, valid_filename
from avc_upload.streams import FormReader, Measured, measured, read_limited

log = get_logger(__name__)

# Room for the form's boundaries and headers around the file in a direct upload.
FORM_OVERHEAD_BYTES: Final = 64 * 1024
_TITLE_FIELD_LIMIT: Final = 4 * MAX_TITLE_CHARS


def too_large(limit: int) -> AppError:
    return DirectUploadTooLarge(
        f"Direct uploads take files up to {limit} bytes; use the chunked upload "
        "(POST /api/v1/upload/init, then /api/v1/upload/chunk and "
        "/api/v1/upload/complete) for bigger files.",
        details={"max_bytes": limit, "chunked_upload": "/api/v1/upload/init"},
    )


class DirectUploads:
    def __init__(self, ctx: UploadContext, completion: Completion) -> None:
        self._ctx = ctx
        self._completion = completion

    def check_length(self, declared: int | None) -> None:
        """Refuses a body whose declared length is over the limit before reading any of it."""
        limit = self._ctx.settings.direct_max_bytes
        if declared is not None and declared > limit + FORM_OVERHEAD_BYTES:
            raise too_large(limit)

    async def direct_upload(self, caller: Caller, form: FormReader) -> VideoCreated:
        """Returns the video made of a multipart/form-data upload, streamed into storage."""
        ctx = self._ctx
        now = ctx.clock()
        video_id = new_id("vid")
        upload = Upload(
            id=new_id("upl"),
            account_id=caller.account_id,
            kind=UploadKind.DIRECT,
            status=UploadStatus.RECEIVING,
            video_id=video_id,
            source_key=source_key(video_id),
            created_at=now,
            updated_at=now,
            # Not finished by then (the process died mid-body): the sweeper removes the rest.
            expires_at=now + timedelta(seconds=ctx.settings.expiry_seconds),
            caller_plan=caller.plan,
            caller_api_preview=caller.api_preview,
            complete_request_id=caller.request_id,
        )
        await ctx.repo.insert(upload)
        tally = Measured()
        try:
            filename, title, info = await self._receive_form(form, upload.source_key, tally)
        except BaseException as exc:
            with anyio.CancelScope(shield=True):
                await self._fail(upload)
            outcome = "rejected" if isinstance(exc, AppError) else "error"
            ctx.metrics.complete(UploadKind.DIRECT, outcome)
            if isinstance(exc, ObjectsError):
                log.warning("storage_failed", step="put", error=str(exc))
                raise StorageUnavailable() from exc
            raise
        known = await ctx.known_sha256(upload.source_key)
        if known is not None and known != tally.sha256:
            log.error("direct_upload_hash_differs", upload_id=upload.id)
            raise InternalError()
        ctx.metrics.stored("direct", info.size)
        assembled = await ctx.repo.assembled(
            upload,
            Assembled(
                sha256=tally.sha256,
                object_etag=info.etag,
                event_id=video_uploaded_event_id(video_id),
                filename=filename,
                title=title,
                size=info.size,
            ),
            ctx.clock(),
        )
        if assembled is None:  # expired by the sweeper while receiving (a day-long body)
            with anyio.CancelScope(shield=True), suppress(ObjectsError):
                await ctx.objects.delete(upload.source_key)
            raise UploadExpired("The upload took too long and expired; send it again.")
        log.info("direct_upload_stored", upload_id=upload.id, size=info.size)
        return await self._completion.drive(assembled, caller)

    async def _receive_form(
        self, form: FormReader, key: str, tally: Measured
    ) -> tuple[str, str, ObjectInfo]:
        """Returns (filename, title, stored object) after streaming the form's `file` field
        to `key` as it arrives (the `title` field may come before or after it)."""
        limit = self._ctx.settings.direct_max_bytes
        over: Callable[[], AppError] = lambda: too_large(limit)  # noqa: E731
        filename: str | None = None
        raw_title: str | None = None
        info: ObjectInfo | None = None
        while (part := await form.next_part()) is not None:
            if part.name == "file":
                if info is not None:
                    raise InvalidForm("The form has more than one `file` field.")
                if part.filename is None:
                    raise InvalidFilename("The `file` field needs a filename (curl -F file=@x).")
                filename = valid_filename(part.filename)
                stream = measured(form.part_data(), tally, max_bytes=limit, too_large=over)
                info = await self._ctx.objects.put(
                    key, stream, content_type=part.content_type or content_type_of(filename)
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
        return filename, title_or_default(raw_title, filename), info

    async def _fail(self, upload: Upload) -> None:
        now = self._ctx.clock()
        failed = await self._ctx.repo.fail(upload, now=now, purge_at=self._ctx.purge_at(now))
        if failed is not None:
            await self._completion.cleanup(failed)
