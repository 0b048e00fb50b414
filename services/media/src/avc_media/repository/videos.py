"""Storage of the media service: videos as their owner sees them, and the public lookups.

Everything a client asks for goes through `VideoRepository`, whose every query is scoped to the
caller's account. The few lookups that are not — by embed token or playback token (public
playback) — are grouped in `PublicVideos` so that they stand out; the encode worker's
bookkeeping is in `jobs`. The document fields are described in `records`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from avc_common.documents import Collection, DocumentDatabase, DuplicateKey
from avc_common.timeutil import utcnow
from avc_media.repository.records import Preset, Video, VideoChanges

VIDEOS: Final = "videos"
VIEWS: Final = "view_sessions"
PRESETS: Final = "presets"
VIEW_WINDOW_SECONDS: Final = 30 * 60
LIVE: Final[Mapping[str, Any]] = {"deleted_at": None}
"""Filter part leaving out videos being deleted."""
NEWEST_FIRST: Final = [("created_at", -1), ("_id", -1)]


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


def _video(doc: Mapping[str, Any] | None) -> Video | None:
    return None if doc is None else Video.from_doc(doc)


def _preset(doc: Mapping[str, Any] | None) -> Preset | None:
    return None if doc is None else Preset.from_doc(doc)


class VideoRepository:
    """Videos as their owner sees them: every method takes the caller's account id."""

    def __init__(self, db: DocumentDatabase) -> None:
        self._videos: Collection = db.collection(VIDEOS)
        self._presets: Collection = db.collection(PRESETS)

    async def insert(self, video: Video) -> None:
        """Stores a new video; raises DuplicateKey (same upload, id or embed token)."""
        await self._videos.insert_one(video.to_new_doc())

    async def get(self, account_id: str, video_id: str) -> Video | None:
        """Returns the account's video, or None (also while it is being deleted)."""
        return _video(
            await self._videos.find_one({"_id": video_id, "account_id": account_id, **LIVE})
        )

    async def by_upload(self, account_id: str, upload_id: str) -> Video | None:
        """Returns the video registered for this upload (even while being deleted)."""
        return _video(
            await self._videos.find_one({"account_id": account_id, "upload_id": upload_id})
        )

    async def page(self, account_id: str, *, skip: int, limit: int) -> tuple[list[Video], int]:
        """Returns one page of the account's videos, newest first, and how many there are."""
        where = {"account_id": account_id, **LIVE}
        docs = await self._videos.find(where, sort=NEWEST_FIRST, skip=skip, limit=limit)
        return [Video.from_doc(d) for d in docs], await self._videos.count(where)

    async def update(self, account_id: str, video_id: str, changes: VideoChanges) -> Video | None:
        """Returns the video after applying `changes` (None when the account has no such
        video); with nothing to change, the video as it is."""
        fields = changes.to_set()
        if not fields:
            return await self.get(account_id, video_id)
        return _video(
            await self._videos.find_one_and_update(
                {"_id": video_id, "account_id": account_id, **LIVE},
                {"$set": {**fields, "updated_at": utcnow()}},
            )
        )

    async def start_delete(self, account_id: str, video_id: str) -> Video | None:
        """Returns the video, now marked as being deleted (None: no such video)."""
        return _video(
            await self._videos.find_one_and_update(
                {"_id": video_id, "account_id": account_id, **LIVE},
                {"$set": {"deleted_at": utcnow()}},
            )
        )

    async def preset(self, account_id: str, preset_id: str) -> Preset | None:
        """Returns the account's player preset (the presets feature owns that collection)."""
        return _preset(await self._presets.find_one({"_id": preset_id, "account_id": account_id}))


class PublicVideos:
    """Unscoped lookups for public embedding and playback (the token is the credential)."""

    def __init__(self, db: DocumentDatabase) -> None:
        self._videos = db.collection(VIDEOS)
        self._presets = db.collection(PRESETS)
        self._views = db.collection(VIEWS)

    async def by_embed_token(self, embed_token: str) -> Video | None:
        return _video(await self._videos.find_one({"embed_token": embed_token, **LIVE}))

    async def by_id(self, video_id: str) -> Video | None:
        return _video(await self._videos.find_one({"_id": video_id, **LIVE}))

    async def preset(self, account_id: str, preset_id: str) -> Preset | None:
        return _preset(await self._presets.find_one({"_id": preset_id, "account_id": account_id}))

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
