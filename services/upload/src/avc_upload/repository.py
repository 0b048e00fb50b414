"""Upload records in the upload service's own database (collection `uploads`).

Every method a request uses is scoped to the caller's account: another account's upload id is
invisible, exactly like one that does not exist. The `sweeper_*` methods work across accounts;
only the background sweeper calls them.

A record is one document, `_id` = the upload id. Writes that race (parallel chunks, a chunk
against a complete, two completes) are single atomic updates conditioned on `status`, so none
is lost and no state is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from avc_common.documents import Collection

# Record statuses. `open` -> `completing` -> `assembled` -> `registered` -> `completed` is the
# chunked path (see service.py for what each one promises); a direct upload starts in
# `receiving` and joins at `assembled`. `aborted`, `expired` and `failed` are final.
OPEN: Final = "open"
RECEIVING: Final = "receiving"
COMPLETING: Final = "completing"
ASSEMBLED: Final = "assembled"
REGISTERED: Final = "registered"
COMPLETED: Final = "completed"
ABORTED: Final = "aborted"
EXPIRED: Final = "expired"
FAILED: Final = "failed"
IN_COMPLETION: Final = (COMPLETING, ASSEMBLED, REGISTERED)

Doc = dict[str, Any]


def part_field(index: int) -> str:
    """Returns the field under `parts` for chunk `index` (digit-only paths are not portable)."""
    return f"c{index}"


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

    async def insert(self, doc: Mapping[str, Any]) -> None:
        await self._c.insert_one(doc)

    async def get(self, account_id: str, upload_id: str) -> Doc | None:
        """Returns the account's upload, or None (also for another account's)."""
        return await self._c.find_one({"_id": upload_id, "account_id": account_id})

    async def count_open(self, account_id: str, now: datetime) -> int:
        """Returns how many chunked uploads the account has open and not yet expired."""
        return await self._c.count(
            {"account_id": account_id, "status": OPEN, "expires_at": {"$gt": now}}
        )

    async def record_part(
        self, account_id: str, upload_id: str, index: int, *, etag: str, size: int, now: datetime
    ) -> Doc | None:
        """Returns the record after marking chunk `index` received with its part's etag, or
        None when the upload is no longer open. Atomic: parallel chunks never lose each other,
        and a chunk sent again overwrites its own entry only.

        `accepted` keeps every version of the chunk the client was told was received: copies
        of one chunk sent at once may be stored in one order and recorded in the other, and
        `complete` must take whichever one storage kept (never one the client was told failed).
        """
        field = f"parts.{part_field(index)}"
        return await self._c.find_one_and_update(
            {"_id": upload_id, "account_id": account_id, "status": OPEN},
            {
                "$set": {f"{field}.etag": etag, f"{field}.size": size, "updated_at": now},
                "$addToSet": {"received": index, f"{field}.accepted": etag},
            },
        )

    async def transition(
        self,
        account_id: str,
        upload_id: str,
        *,
        from_status: str | Sequence[str],
        to_status: str,
        now: datetime,
        set_fields: Mapping[str, Any] | None = None,
        unset_fields: Sequence[str] = (),
        extra_filter: Mapping[str, Any] | None = None,
    ) -> Doc | None:
        """Returns the record after moving it from `from_status` to `to_status` (setting
        `set_fields`), or None when it was not in `from_status` (someone else moved it)."""
        current: Any = from_status if isinstance(from_status, str) else {"$in": list(from_status)}
        query: dict[str, Any] = {"_id": upload_id, "account_id": account_id, "status": current}
        query.update(extra_filter or {})
        update: dict[str, Any] = {
            "$set": {**(set_fields or {}), "status": to_status, "updated_at": now}
        }
        if unset_fields:
            update["$unset"] = {field: "" for field in unset_fields}
        return await self._c.find_one_and_update(query, update)

    async def touch(self, account_id: str, upload_id: str, *, status: str, now: datetime) -> None:
        """Marks a record in `status` as worked on now (keeps the sweeper from re-driving a
        completion that a request is driving)."""
        await self._c.update_one(
            {"_id": upload_id, "account_id": account_id, "status": status},
            {"$set": {"updated_at": now}},
        )

    # -- the sweeper's (all accounts) ----------------------------------------------------------

    async def sweeper_expired(self, now: datetime, *, limit: int) -> list[Doc]:
        """Returns open chunked uploads and unfinished direct uploads past their expiry."""
        return await self._c.find(
            {"status": {"$in": [OPEN, RECEIVING]}, "expires_at": {"$lte": now}},
            sort=[("expires_at", 1)],
            limit=limit,
        )

    async def sweeper_stalled(self, before: datetime, *, limit: int) -> list[Doc]:
        """Returns completions nobody has worked on since `before` (their process died)."""
        return await self._c.find(
            {"status": {"$in": list(IN_COMPLETION)}, "updated_at": {"$lte": before}},
            sort=[("updated_at", 1)],
            limit=limit,
        )

    async def sweeper_cleanup(self, before: datetime, *, limit: int) -> list[Doc]:
        """Returns ended uploads whose storage cleanup has not succeeded since `before`."""
        return await self._c.find(
            {"cleanup_pending": True, "updated_at": {"$lte": before}},
            sort=[("updated_at", 1)],
            limit=limit,
        )
