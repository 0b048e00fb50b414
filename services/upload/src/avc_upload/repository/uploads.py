"""Upload records in the upload service's own database (collection `uploads`).

Every method a request uses is scoped to the caller's account: another account's upload id is
invisible, exactly like one that does not exist. The `sweeper_*` methods work across accounts;
only the background sweeper calls them.

A record is one document, `_id` = the upload id. Writes that race (parallel chunks, a chunk
against a complete, two completes) are single atomic updates conditioned on `status`, so none
is lost and no state is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from avc_common.documents import Collection
from avc_common.internal_auth import Caller
from avc_upload.repository.records import (
    IN_COMPLETION,
    Assembled,
    Doc,
    Upload,
    UploadStatus,
    part_field,
)

OPEN = UploadStatus.OPEN
RECEIVING = UploadStatus.RECEIVING


class UploadRepository:
    def __init__(self, collection: Collection) -> None:
        self._c = collection

    async def ensure_indexes(self) -> None:
        await self._c.create_index([("account_id", 1), ("status", 1)])
        await self._c.create_index([("status", 1), ("expires_at", 1)])
        await self._c.create_index([("status", 1), ("updated_at", 1)])
        await self._c.create_index([("cleanup_pending", 1), ("updated_at", 1)])
        # Finished records go away on their own after the retention period.
        await self._c.create_index([("purge_at", 1)], expire_after_seconds=0)

    async def insert(self, upload: Upload) -> None:
        await self._c.insert_one(upload.to_doc())

    async def get(self, account_id: str, upload_id: str) -> Upload | None:
        """Returns the account's upload, or None (also for another account's)."""
        doc = await self._c.find_one({"_id": upload_id, "account_id": account_id})
        return _upload(doc)

    async def count_open(self, account_id: str, now: datetime) -> int:
        """Returns how many chunked uploads the account has open and not yet expired."""
        return await self._c.count(
            {"account_id": account_id, "status": OPEN.value, "expires_at": {"$gt": now}}
        )

    async def record_part(
        self, account_id: str, upload_id: str, index: int, *, etag: str, size: int, now: datetime
    ) -> Upload | None:
        """Returns the record after marking chunk `index` received with its part's etag, or
        None when the upload is no longer open. Atomic: parallel chunks never lose each other,
        and a chunk sent again overwrites its own entry only.

        `accepted` keeps every version of the chunk the client was told was received: copies
        of one chunk sent at once may be stored in one order and recorded in the other, and
        `complete` must take whichever one storage kept (never one the client was told failed).
        """
        field = f"parts.{part_field(index)}"
        doc = await self._c.find_one_and_update(
            {"_id": upload_id, "account_id": account_id, "status": OPEN.value},
            {
                "$set": {f"{field}.etag": etag, f"{field}.size": size, "updated_at": now},
                "$addToSet": {"received": index, f"{field}.accepted": etag},
            },
        )
        return _upload(doc)

    # -- state changes: each one conditional on the status it starts from ----------------------

    async def start_completion(
        self, account_id: str, upload_id: str, caller: Caller, now: datetime
    ) -> Upload | None:
        """`open` -> `completing` (unless it expired), remembering who the completion is for."""
        return await self._move(
            account_id,
            upload_id,
            OPEN,
            UploadStatus.COMPLETING,
            now,
            set_fields={
                "caller_plan": caller.plan,
                "caller_api_preview": caller.api_preview,
                "complete_request_id": caller.request_id,
                "completing_since": now,
            },
            extra_filter={"expires_at": {"$gt": now}},
        )

    async def assembled(self, upload: Upload, assembled: Assembled, now: datetime) -> Upload | None:
        """`completing` (chunked) or `receiving` (direct) -> `assembled`; a chunked upload's
        part records are dropped (the object exists now)."""
        source = RECEIVING if upload.status is RECEIVING else UploadStatus.COMPLETING
        return await self._move(
            upload.account_id,
            upload.id,
            source,
            UploadStatus.ASSEMBLED,
            now,
            set_fields=assembled.to_doc(),
            unset_fields=("parts",) if source is UploadStatus.COMPLETING else (),
        )

    async def registered(
        self, upload: Upload, *, embed_token: str, video_status: str, now: datetime
    ) -> Upload | None:
        """`assembled` -> `registered`, with media's answer."""
        return await self._move(
            upload.account_id,
            upload.id,
            UploadStatus.ASSEMBLED,
            UploadStatus.REGISTERED,
            now,
            set_fields={"embed_token": embed_token, "video_status": video_status},
        )

    async def completed(
        self, upload: Upload, *, now: datetime, purge_at: datetime
    ) -> Upload | None:
        """`registered` -> `completed` (the record is purged at `purge_at`)."""
        return await self._move(
            upload.account_id,
            upload.id,
            UploadStatus.REGISTERED,
            UploadStatus.COMPLETED,
            now,
            set_fields={"completed_at": now, "purge_at": purge_at},
        )

    async def reopen(
        self,
        upload: Upload,
        *,
        drop: Iterable[int],
        now: datetime,
        new_multipart_id: str | None = None,
    ) -> Upload | None:
        """`completing` -> `open`, forgetting the chunks in `drop` (all of them, with a fresh
        multipart upload, when `new_multipart_id` is given)."""
        dropped = set(drop)
        set_fields: Doc = {"received": sorted(upload.received - dropped)}
        unset: list[str] = []
        if new_multipart_id is not None:
            set_fields.update(multipart_id=new_multipart_id, parts={})
        else:
            unset = [f"parts.{part_field(i)}" for i in sorted(dropped)]
        return await self._move(
            upload.account_id,
            upload.id,
            UploadStatus.COMPLETING,
            OPEN,
            now,
            set_fields=set_fields,
            unset_fields=unset,
        )

    async def abort(
        self, account_id: str, upload_id: str, *, now: datetime, purge_at: datetime
    ) -> Upload | None:
        """`open` -> `aborted`, its storage still to be removed."""
        return await self._move(
            account_id,
            upload_id,
            OPEN,
            UploadStatus.ABORTED,
            now,
            set_fields={"cleanup_pending": True, "purge_at": purge_at},
        )

    async def fail(self, upload: Upload, *, now: datetime, purge_at: datetime) -> Upload | None:
        """`receiving` -> `failed` (a direct upload that did not arrive), storage to remove."""
        return await self._move(
            upload.account_id,
            upload.id,
            RECEIVING,
            UploadStatus.FAILED,
            now,
            set_fields={"cleanup_pending": True, "purge_at": purge_at},
        )

    async def expire(
        self, account_id: str, upload_id: str, *, now: datetime, purge_at: datetime
    ) -> Upload | None:
        """`open`/`receiving` -> `expired` if its expiry has passed by `now`; storage to
        remove. None when it was not due (or someone else moved it)."""
        return await self._move(
            account_id,
            upload_id,
            (OPEN, RECEIVING),
            UploadStatus.EXPIRED,
            now,
            set_fields={"cleanup_pending": True, "purge_at": purge_at},
            unset_fields=("parts",),
            extra_filter={"expires_at": {"$lte": now}},
        )

    async def cleaned(self, upload: Upload, now: datetime) -> None:
        """Records that the storage of an ended upload is gone."""
        await self._move(
            upload.account_id,
            upload.id,
            upload.status,
            upload.status,
            now,
            set_fields={"cleanup_pending": False},
        )

    async def touch(
        self, account_id: str, upload_id: str, *, status: UploadStatus, now: datetime
    ) -> None:
        """Marks a record in `status` as worked on now (keeps the sweeper from re-driving a
        completion that a request is driving)."""
        await self._c.update_one(
            {"_id": upload_id, "account_id": account_id, "status": status.value},
            {"$set": {"updated_at": now}},
        )

    async def _move(
        self,
        account_id: str,
        upload_id: str,
        from_status: UploadStatus | Sequence[UploadStatus],
        to_status: UploadStatus,
        now: datetime,
        *,
        set_fields: Mapping[str, Any] | None = None,
        unset_fields: Sequence[str] = (),
        extra_filter: Mapping[str, Any] | None = None,
    ) -> Upload | None:
        """Returns the record after moving it from `from_status` to `to_status` (setting
        `set_fields`), or None when it was not in `from_status` (someone else moved it)."""
        current: Any = (
            from_status.value
            if isinstance(from_status, UploadStatus)
            else {"$in": [s.value for s in from_status]}
        )
        query: dict[str, Any] = {"_id": upload_id, "account_id": account_id, "status": current}
        query.update(extra_filter or {})
        update: dict[str, Any] = {
            "$set": {**(set_fields or {}), "status": to_status.value, "updated_at": now}
        }
        if unset_fields:
            update["$unset"] = {name: "" for name in unset_fields}
        return _upload(await self._c.find_one_and_update(query, update))

    # -- the sweeper's (all accounts) ----------------------------------------------------------

    async def sweeper_expired(self, now: datetime, *, limit: int) -> list[Upload]:
        """Returns open chunked uploads and unfinished direct uploads past their expiry."""
        docs = await self._c.find(
            {"status": {"$in": [OPEN.value, RECEIVING.value]}, "expires_at": {"$lte": now}},
            sort=[("expires_at", 1)],
            limit=limit,
        )
        return [Upload.from_doc(doc) for doc in docs]

    async def sweeper_stalled(self, before: datetime, *, limit: int) -> list[Upload]:
        """Returns completions nobody has worked on since `before` (their process died)."""
        docs = await self._c.find(
            {"status": {"$in": [s.value for s in IN_COMPLETION]}, "updated_at": {"$lte": before}},
            sort=[("updated_at", 1)],
            limit=limit,
        )
        return [Upload.from_doc(doc) for doc in docs]

    async def sweeper_cleanup(self, before: datetime, *, limit: int) -> list[Upload]:
        """Returns ended uploads whose storage cleanup has not succeeded since `before`."""
        docs = await self._c.find(
            {"cleanup_pending": True, "updated_at": {"$lte": before}},
            sort=[("updated_at", 1)],
            limit=limit,
        )
        return [Upload.from_doc(doc) for doc in docs]


def _upload(doc: Mapping[str, Any] | None) -> Upload | None:
    return None if doc is None else Upload.from_doc(doc)
