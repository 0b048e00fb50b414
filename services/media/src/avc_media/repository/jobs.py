"""The encode worker's (and re-drive's) storage: leases, results, the outbox, and the steps of
a delete that the API starts and the re-drive may have to finish.

These act for the account named in an event, so they are not scoped to a caller; the document
fields are described in `records`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from avc_common.documents import DocumentDatabase
from avc_common.events import Event
from avc_common.timeutil import utcnow
from avc_media.repository.records import (
    Doc,
    Encoded,
    Video,
    VideoError,
    VideoStatus,
    encoded_fields,
    failed_fields,
)
from avc_media.repository.videos import LIVE, VIDEOS

PROCESSING: Final = VideoStatus.PROCESSING.value
DROP_LEASE: Final = {"lease_owner": "", "lease_expires_at": ""}


def _outbox_set(event: Event, now: datetime) -> Doc:
    """Returns the `$set` fields that park `event` in a video's outbox, written together with the
    state change it announces (the re-drive sends it if the writer dies before publishing)."""
    return {f"outbox.{event.id}": event.model_dump(mode="json"), "outbox_at": now}


def _unleased(now: datetime) -> Doc:
    """Filter part: no live lease holds the video."""
    return {"$or": [{"lease_expires_at": None}, {"lease_expires_at": {"$lte": now}}]}


class EncodeJobs:
    """The encode worker's (and re-drive's) view of videos: leases, results, the outbox."""

    def __init__(self, db: DocumentDatabase) -> None:
        self._videos = db.collection(VIDEOS)

    async def get(self, account_id: str, video_id: str) -> Video | None:
        """Returns the video, also while it is being deleted (see `Video.deleted`)."""
        doc = await self._videos.find_one({"_id": video_id, "account_id": account_id})
        return None if doc is None else Video.from_doc(doc)

    async def remember_upload_event(self, video_id: str, event_id: str) -> None:
        """Records the id of the `video.uploaded` event the first time a worker sees it."""
        await self._videos.update_one(
            {"_id": video_id, "upload_event_id": None}, {"$set": {"upload_event_id": event_id}}
        )

    async def acquire_lease(
        self, account_id: str, video_id: str, *, owner: str, seconds: float
    ) -> Video | None:
        """Returns the video with a fresh lease for `owner` — when it is still processing and no
        other live lease holds it — else None. Counts the attempt."""
        now = utcnow()
        doc = await self._videos.find_one_and_update(
            # Not re-entrant: a second delivery for a video this very worker is encoding (a
            # re-drive duplicate) must not start a second encode.
            {
                "_id": video_id,
                "account_id": account_id,
                "status": PROCESSING,
                **LIVE,
                **_unleased(now),
            },
            {
                "$set": {
                    "lease_owner": owner,
                    "lease_expires_at": now + timedelta(seconds=seconds),
                },
                "$inc": {"encode_attempts": 1},
            },
        )
        return None if doc is None else Video.from_doc(doc)

    async def renew_lease(self, video_id: str, *, owner: str, seconds: float) -> bool:
        """Returns whether `owner` still holds the lease (now extended)."""
        result = await self._videos.update_one(
            {"_id": video_id, "lease_owner": owner, "status": PROCESSING, **LIVE},
            {"$set": {"lease_expires_at": utcnow() + timedelta(seconds=seconds)}},
        )
        return result.matched_count == 1

    async def release_lease(self, video_id: str, *, owner: str) -> None:
        """Gives the video back (the encode stopped without a result)."""
        await self._videos.update_one(
            {"_id": video_id, "lease_owner": owner}, {"$unset": DROP_LEASE}
        )

    async def finish(
        self, video_id: str, *, owner: str, result: Encoded | VideoError, event: Event
    ) -> bool:
        """Returns whether the result (`ready` with `Encoded`, `failed` with `VideoError`) was
        recorded: stored, lease dropped and `event` parked in the outbox, atomically — only
        while `owner` holds the lease of a live video still processing."""
        now = utcnow()
        if isinstance(result, Encoded):
            fields = encoded_fields(result, now)
        else:
            fields = failed_fields(result, now)
        outcome = await self._videos.update_one(
            {"_id": video_id, "lease_owner": owner, "status": PROCESSING, **LIVE},
            {
                "$set": {**fields, "updated_at": now, **_outbox_set(event, now)},
                "$unset": DROP_LEASE,
            },
        )
        return outcome.matched_count == 1

    async def fail_unleased(self, video_id: str, *, error: VideoError, event: Event) -> bool:
        """Returns whether a processing video nobody holds was marked failed (with `event`)."""
        now = utcnow()
        outcome = await self._videos.update_one(
            {"_id": video_id, "status": PROCESSING, **LIVE, **_unleased(now)},
            {
                "$set": {**failed_fields(error, now), "updated_at": now, **_outbox_set(event, now)},
                "$unset": DROP_LEASE,
            },
        )
        return outcome.matched_count == 1

    async def sent(self, video_id: str, event_id: str) -> None:
        """Drops a published event from the video's outbox."""
        await self._videos.update_one({"_id": video_id}, {"$unset": {f"outbox.{event_id}": ""}})

    # ---- re-drive ------------------------------------------------------------------------------

    async def _find(self, where: Doc, *, sort: str, limit: int) -> list[Video]:
        docs = await self._videos.find(where, sort=[(sort, 1)], limit=limit)
        return [Video.from_doc(d) for d in docs]

    async def stale_leases(self, *, now: datetime, limit: int) -> list[Video]:
        """Returns processing videos whose encode lease ran out (their worker died)."""
        where = {"status": PROCESSING, **LIVE, "lease_expires_at": {"$lte": now}}
        return await self._find(where, sort="lease_expires_at", limit=limit)

    async def never_started(self, *, queued_before: datetime, limit: int) -> list[Video]:
        """Returns processing videos no worker has leased, queued before `queued_before`."""
        where = {
            "status": PROCESSING,
            **LIVE,
            "lease_expires_at": None,
            "$or": [
                {"queued_at": {"$lte": queued_before}},
                {"queued_at": None, "created_at": {"$lte": queued_before}},
            ],
        }
        return await self._find(where, sort="created_at", limit=limit)

    async def claim_requeue(self, video: Video, *, now: datetime) -> bool:
        """Returns whether this process won the right to re-queue the video (clears a stale
        lease and stamps `queued_at`, so others — and the next rounds — leave it alone): only
        while its lease and queue stamp are still those read."""
        where: dict[str, Any] = {
            "_id": video.id,
            "status": PROCESSING,
            **LIVE,
            "lease_expires_at": video.lease_expires_at,
            "queued_at": video.queued_at,
        }
        outcome = await self._videos.update_one(
            where, {"$set": {"queued_at": now}, "$unset": DROP_LEASE}
        )
        return outcome.matched_count == 1

    async def unclaim_requeue(self, video_id: str, *, queued_at: datetime) -> None:
        """Undoes `claim_requeue` when the republish failed (the next round tries again)."""
        await self._videos.update_one(
            {"_id": video_id, "queued_at": queued_at}, {"$unset": {"queued_at": ""}}
        )

    async def pending_outbox(self, *, before: datetime, limit: int) -> list[Video]:
        """Returns videos holding events written before `before` and not yet published."""
        return await self._find({"outbox_at": {"$lte": before}}, sort="outbox_at", limit=limit)

    async def outbox_drained(self, video: Video) -> None:
        """Clears the outbox marker when nothing was added since `video` was read."""
        await self._videos.update_one(
            {"_id": video.id, "outbox_at": video.outbox_at, "outbox": {}},
            {"$unset": {"outbox_at": "", "outbox": ""}},
        )

    async def unfinished_deletes(self, *, before: datetime, limit: int) -> list[Video]:
        """Returns videos whose delete started before `before` and did not finish."""
        return await self._find({"deleted_at": {"$lte": before}}, sort="deleted_at", limit=limit)


class Deletions:
    """The steps of deleting a video, shared by the API (first try) and the re-drive."""

    def __init__(self, db: DocumentDatabase) -> None:
        self._videos = db.collection(VIDEOS)

    async def record_sizes(
        self, video_id: str, *, source_bytes: int, renditions_bytes: int, event: Event
    ) -> Video | None:
        """Returns the video after the bytes about to be freed and the `video.deleted` event
        were recorded — unless an earlier attempt already did (then its values stay)."""
        now = utcnow()
        await self._videos.update_one(
            {"_id": video_id, "deleted_at": {"$ne": None}, "deleted_event_id": None},
            {
                "$set": {
                    "deleted_source_bytes": source_bytes,
                    "deleted_renditions_bytes": renditions_bytes,
                    "deleted_event_id": event.id,
                    **_outbox_set(event, now),
                }
            },
        )
        doc = await self._videos.find_one({"_id": video_id})
        return None if doc is None else Video.from_doc(doc)

    async def remove(self, video_id: str) -> None:
        await self._videos.delete_one({"_id": video_id, "deleted_at": {"$ne": None}})
