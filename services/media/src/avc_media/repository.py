"""Storage of the media service: videos, view sessions, (read-only here) presets.

Everything a client asks for goes through `VideoRepository`, whose every query is scoped to the
caller's account. The few lookups that are not — by embed token or playback token (public
playback), and the encode worker's bookkeeping, which acts for the account named in the event
— are grouped in `PublicVideos` and `EncodeJobs` so that they stand out.

A video document:

    _id, account_id, upload_id, title, filename, status (processing|ready|failed), size_bytes,
    sha256, source_key, duration_seconds, width, height, allowed_domains, visibility,
    embed_token, renditions [{name, width, height, bitrate_kbps, bandwidth, codecs, ...}],
    renditions_bytes, preset_id, error {code, message} | None, created_at, updated_at
    upload_event_id        id of the `video.uploaded` event (re-drives republish it unchanged)
    lease_owner, lease_expires_at, encode_attempts, queued_at     the encode lease (worker)
    outbox {event_id: event}, outbox_at    events written with the state change, not yet sent
    deleted_at, deleted_source_bytes, deleted_renditions_bytes    a delete in progress
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from avc_common.documents import Collection, DocumentDatabase, DuplicateKey
from avc_common.events import Event
from avc_common.timeutil import utcnow

VIDEOS: Final = "videos"
VIEWS: Final = "view_sessions"
PRESETS: Final = "presets"
VIEW_WINDOW_SECONDS: Final = 30 * 60
LIVE: Final[Mapping[str, Any]] = {"deleted_at": None}
"""Filter part leaving out videos being deleted."""

Doc = dict[str, Any]


async def ensure_indexes(db: DocumentDatabase) -> None:
    """Creates the media database's indexes (idempotent; every component calls it on start)."""
    videos = db.collection(VIDEOS)
    await videos.create_index([("account_id", 1), ("upload_id", 1)], unique=True)
    await videos.create_index([("embed_token", 1)], unique=True)
    await videos.create_index([("account_id", 1), ("created_at", -1), ("_id", -1)])
    await videos.create_index([("status", 1), ("lease_expires_at", 1)])
    await videos.create_index([("outbox_at", 1)])
    await videos.create_index([("deleted_at", 1)])
    views = db.collection(VIEWS)
    await views.create_index([("counted_at", 1)], expire_after_seconds=VIEW_WINDOW_SECONDS)


def outbox_set(event: Event, now: datetime) -> dict[str, Any]:
    """Returns the `$set` fields that park `event` in a video's outbox, written together with the
    state change it announces (the re-drive sends it if the writer dies before publishing)."""
    return {f"outbox.{event.id}": event.model_dump(mode="json"), "outbox_at": now}


class VideoRepository:
    """Videos as their owner sees them: every method takes the caller's account id."""

    def __init__(self, db: DocumentDatabase) -> None:
        self._videos: Collection = db.collection(VIDEOS)
        self._presets: Collection = db.collection(PRESETS)

    async def insert(self, doc: Mapping[str, Any]) -> None:
        """Stores a new video; raises DuplicateKey (same upload, id or embed token)."""
        await self._videos.insert_one(doc)

    async def get(self, account_id: str, video_id: str) -> Doc | None:
        """Returns the account's video, or None (also while it is being deleted)."""
        return await self._videos.find_one({"_id": video_id, "account_id": account_id, **LIVE})

    async def by_upload(self, account_id: str, upload_id: str) -> Doc | None:
        """Returns the video registered for this upload (even while being deleted)."""
        return await self._videos.find_one({"account_id": account_id, "upload_id": upload_id})

    async def page(self, account_id: str, *, skip: int, limit: int) -> tuple[list[Doc], int]:
        """Returns one page of the account's videos, newest first, and how many there are."""
        where = {"account_id": account_id, **LIVE}
        docs = await self._videos.find(
            where, sort=[("created_at", -1), ("_id", -1)], skip=skip, limit=limit
        )
        return docs, await self._videos.count(where)

    async def update(self, account_id: str, video_id: str, fields: Mapping[str, Any]) -> Doc | None:
        """Returns the video after setting `fields` (None when the account has no such video)."""
        return await self._videos.find_one_and_update(
            {"_id": video_id, "account_id": account_id, **LIVE},
            {"$set": {**fields, "updated_at": utcnow()}},
        )

    async def start_delete(self, account_id: str, video_id: str) -> Doc | None:
        """Returns the video as it was, now marked as being deleted (None: no such video)."""
        return await self._videos.find_one_and_update(
            {"_id": video_id, "account_id": account_id, **LIVE},
            {"$set": {"deleted_at": utcnow()}},
            return_document="before",
        )

    async def preset(self, account_id: str, preset_id: str) -> Doc | None:
        """Returns the account's player preset (the presets feature owns that collection)."""
        return await self._presets.find_one({"_id": preset_id, "account_id": account_id})


class PublicVideos:
    """Unscoped lookups for public embedding and playback (the token is the credential)."""

    def __init__(self, db: DocumentDatabase) -> None:
        self._videos = db.collection(VIDEOS)
        self._presets = db.collection(PRESETS)
        self._views = db.collection(VIEWS)

    async def by_embed_token(self, embed_token: str) -> Doc | None:
        return await self._videos.find_one({"embed_token": embed_token, **LIVE})

    async def by_id(self, video_id: str) -> Doc | None:
        return await self._videos.find_one({"_id": video_id, **LIVE})

    async def preset(self, account_id: str, preset_id: str) -> Doc | None:
        return await self._presets.find_one({"_id": preset_id, "account_id": account_id})

    async def count_view(self, video_id: str, session_id: str, *, now: datetime) -> bool:
        """Returns True when this session's play start counts: the first for this video in the
        last 30 minutes (a fixed window from the counted one)."""
        key = f"{video_id}:{session_id}"
        cutoff = now - timedelta(seconds=VIEW_WINDOW_SECONDS)
        renewed = await self._views.update_one(
            {"_id": key, "counted_at": {"$lte": cutoff}}, {"$set": {"counted_at": now}}
        )
        if renewed.matched_count:
            return True
        try:
            await self._views.insert_one({"_id": key, "video_id": video_id, "counted_at": now})
        except DuplicateKey:
            return False
        return True

    async def forget_view(self, video_id: str, session_id: str, *, counted_at: datetime) -> None:
        """Undoes `count_view` (the view could not be published)."""
        await self._views.delete_one({"_id": f"{video_id}:{session_id}", "counted_at": counted_at})


class EncodeJobs:
    """The encode worker's (and re-drive's) view of videos: leases, results, the outbox."""

    def __init__(self, db: DocumentDatabase) -> None:
        self._videos = db.collection(VIDEOS)

    async def get(self, account_id: str, video_id: str) -> Doc | None:
        return await self._videos.find_one({"_id": video_id, "account_id": account_id})

    async def remember_upload_event(self, video_id: str, event_id: str) -> None:
        """Records the id of the `video.uploaded` event the first time a worker sees it."""
        await self._videos.update_one(
            {"_id": video_id, "upload_event_id": None}, {"$set": {"upload_event_id": event_id}}
        )

    async def acquire_lease(
        self, account_id: str, video_id: str, *, owner: str, seconds: float
    ) -> Doc | None:
        """Returns the video with a fresh lease for `owner` — when it is still processing and no
        other live lease holds it — else None. Counts the attempt."""
        now = utcnow()
        return await self._videos.find_one_and_update(
            {
                "_id": video_id,
                "account_id": account_id,
                "status": "processing",
                **LIVE,
                # Not re-entrant: a second delivery for a video this very worker is encoding
                # (a re-drive duplicate) must not start a second encode.
                "$or": [{"lease_expires_at": None}, {"lease_expires_at": {"$lte": now}}],
            },
            {
                "$set": {
                    "lease_owner": owner,
                    "lease_expires_at": now + timedelta(seconds=seconds),
                },
                "$inc": {"encode_attempts": 1},
            },
        )

    async def renew_lease(self, video_id: str, *, owner: str, seconds: float) -> bool:
        """Returns whether `owner` still holds the lease (now extended)."""
        result = await self._videos.update_one(
            {"_id": video_id, "lease_owner": owner, "status": "processing", **LIVE},
            {"$set": {"lease_expires_at": utcnow() + timedelta(seconds=seconds)}},
        )
        return result.matched_count == 1

    async def release_lease(self, video_id: str, *, owner: str) -> None:
        """Gives the video back (the encode stopped without a result)."""
        await self._videos.update_one(
            {"_id": video_id, "lease_owner": owner},
            {"$unset": {"lease_owner": "", "lease_expires_at": ""}},
        )

    async def finish(
        self, video_id: str, *, owner: str, fields: Mapping[str, Any], event: Event
    ) -> bool:
        """Returns whether the result was recorded: `fields` set, lease dropped and `event`
        parked in the outbox, atomically — only while `owner` holds the lease of a live
        video still processing."""
        now = utcnow()
        result = await self._videos.update_one(
            {"_id": video_id, "lease_owner": owner, "status": "processing", **LIVE},
            {
                "$set": {**fields, "updated_at": now, **outbox_set(event, now)},
                "$unset": {"lease_owner": "", "lease_expires_at": ""},
            },
        )
        return result.matched_count == 1

    async def fail_unleased(
        self, video_id: str, *, fields: Mapping[str, Any], event: Event
    ) -> bool:
        """Returns whether a processing video nobody holds was marked failed (with `event`)."""
        now = utcnow()
        result = await self._videos.update_one(
            {
                "_id": video_id,
                "status": "processing",
                **LIVE,
                "$or": [{"lease_expires_at": None}, {"lease_expires_at": {"$lte": now}}],
            },
            {
                "$set": {**fields, "updated_at": now, **outbox_set(event, now)},
                "$unset": {"lease_owner": "", "lease_expires_at": ""},
            },
        )
        return result.matched_count == 1

    async def sent(self, video_id: str, event_id: str) -> None:
        """Drops a published event from the video's outbox."""
        await self._videos.update_one({"_id": video_id}, {"$unset": {f"outbox.{event_id}": ""}})

    # ---- re-drive ------------------------------------------------------------------------------

    async def stale_leases(self, *, now: datetime, limit: int) -> list[Doc]:
        """Returns processing videos whose encode lease ran out (their worker died)."""
        return await self._videos.find(
            {"status": "processing", **LIVE, "lease_expires_at": {"$lte": now}},
            sort=[("lease_expires_at", 1)],
            limit=limit,
        )

    async def never_started(self, *, queued_before: datetime, limit: int) -> list[Doc]:
        """Returns processing videos no worker has leased, queued before `queued_before`."""
        return await self._videos.find(
            {
                "status": "processing",
                **LIVE,
                "lease_expires_at": None,
                "$or": [
                    {"queued_at": {"$lte": queued_before}},
                    {"queued_at": None, "created_at": {"$lte": queued_before}},
                ],
            },
            sort=[("created_at", 1)],
            limit=limit,
        )

    async def claim_requeue(self, doc: Mapping[str, Any], *, now: datetime) -> bool:
        """Returns whether this process won the right to re-queue the video (clears a stale
        lease and stamps `queued_at`, so others — and the next rounds — leave it alone)."""
        where: dict[str, Any] = {
            "_id": doc["_id"],
            "status": "processing",
            **LIVE,
            "lease_expires_at": doc.get("lease_expires_at"),
            "queued_at": doc.get("queued_at"),
        }
        result = await self._videos.update_one(
            where,
            {"$set": {"queued_at": now}, "$unset": {"lease_owner": "", "lease_expires_at": ""}},
        )
        return result.matched_count == 1

    async def unclaim_requeue(self, video_id: str, *, queued_at: datetime) -> None:
        """Undoes `claim_requeue` when the republish failed (the next round tries again)."""
        await self._videos.update_one(
            {"_id": video_id, "queued_at": queued_at}, {"$unset": {"queued_at": ""}}
        )

    async def pending_outbox(self, *, before: datetime, limit: int) -> list[Doc]:
        """Returns videos holding events written before `before` and not yet published."""
        return await self._videos.find(
            {"outbox_at": {"$lte": before}}, sort=[("outbox_at", 1)], limit=limit
        )

    async def outbox_drained(self, video_id: str, *, outbox_at: datetime) -> None:
        """Clears the outbox marker when nothing was added since `outbox_at` was read."""
        await self._videos.update_one(
            {"_id": video_id, "outbox_at": outbox_at, "outbox": {}},
            {"$unset": {"outbox_at": "", "outbox": ""}},
        )

    async def unfinished_deletes(self, *, before: datetime, limit: int) -> list[Doc]:
        """Returns videos whose delete started before `before` and did not finish."""
        return await self._videos.find(
            {"deleted_at": {"$lte": before}}, sort=[("deleted_at", 1)], limit=limit
        )


class Deletions:
    """The steps of deleting a video, shared by the API (first try) and the re-drive."""

    def __init__(self, db: DocumentDatabase) -> None:
        self._videos = db.collection(VIDEOS)

    async def record_sizes(
        self, video_id: str, *, source_bytes: int, renditions_bytes: int, event: Event
    ) -> Doc | None:
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
                    **outbox_set(event, now),
                }
            },
        )
        return await self._videos.find_one({"_id": video_id})

    async def remove(self, video_id: str) -> None:
        await self._videos.delete_one({"_id": video_id, "deleted_at": {"$ne": None}})
