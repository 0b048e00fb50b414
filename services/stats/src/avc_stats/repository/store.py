"""Storage of the stats service in its own database.

Collections:

- `inbox`: one document per event received (`_id` = event id): the event itself, `state`
  (`pending` | `done`), a lease (`lease_until`) and `expires_at` (TTL). It is the processed-ids
  record and lets a re-drive finish an event whose handler died.
- `videos`: per-video state (`state.VideoState`), `views`, a `version` bumped by every change,
  and the markers of events applied here but not finished yet: `pending_ids` (event ids) and
  `pending` (`{evt, delta}`: the counter changes still owed to the account document).
- `accounts`: per-account counters and `applied`, the ids of unfinished events already added.
- `thresholds`: per-account view thresholds.
- `threshold_fires`: one document per (video, threshold) — its unique `_id` is what makes a
  threshold fire once — holding the `view.threshold` event to publish (`published` flag: the
  outbox).

Reads for the API are scoped to the caller's account. Event processing writes by video id (ids
are global and unguessable) and keeps the account id of the event that created the document.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Final

from avc_common.documents import DocumentDatabase, DuplicateKey
from avc_common.events import Event
from avc_stats.repository.records import (
    AccountCounters,
    Applied,
    Claim,
    Fire,
    InboxState,
    VideoRecord,
    marker_delta,
    state_fields,
    state_from_doc,
)
from avc_stats.state import COUNTERS, Delta, VideoState

INBOX: Final = "inbox"
VIDEOS: Final = "videos"
ACCOUNTS: Final = "accounts"
THRESHOLDS: Final = "thresholds"
FIRES: Final = "threshold_fires"

Compute = Callable[[VideoState], tuple[VideoState | None, Delta]]
"""`compute(current state) -> (new state | None for no change, counter delta)`."""

# Compare-and-set retries before giving up (the bus then retries the whole event).
_CAS_ATTEMPTS: Final = 50


class Conflict(Exception):
    """A compare-and-set kept losing; retried by the bus."""


class StatsRepository:
    def __init__(self, db: DocumentDatabase) -> None:
        self._inbox = db.collection(INBOX)
        self._videos = db.collection(VIDEOS)
        self._accounts = db.collection(ACCOUNTS)
        self._thresholds = db.collection(THRESHOLDS)
        self._fires = db.collection(FIRES)

    async def ensure_indexes(self) -> None:
        """Creates the indexes (a no-op when they exist)."""
        await self._inbox.create_index([("expires_at", 1)], expire_after_seconds=0)
        await self._inbox.create_index([("state", 1), ("lease_until", 1)])
        await self._videos.create_index([("account_id", 1)])
        await self._videos.create_index([("pending_count", 1), ("updated_at", 1)])
        await self._fires.create_index([("published", 1), ("created_at", 1)])

    # -- API reads and writes, scoped to the account --------------------------------------

    async def counters(self, *, account_id: str) -> AccountCounters:
        """Returns the account's counters (zeros when nothing was counted yet)."""
        return AccountCounters.from_doc(await self._accounts.find_one({"_id": account_id}))

    async def thresholds(self, *, account_id: str) -> list[int] | None:
        """Returns the account's thresholds, or None when it never set any."""
        doc = await self._thresholds.find_one({"_id": account_id})
        return None if doc is None else [int(v) for v in doc.get("views", [])]

    async def save_thresholds(self, *, account_id: str, views: list[int], now: datetime) -> None:
        """Stores the account's thresholds."""
        await self._thresholds.update_one(
            {"_id": account_id}, {"$set": {"views": views, "updated_at": now}}, upsert=True
        )

    # -- inbox: processed ids and leases -----------------------------------------------------

    async def claim(
        self, event: Event, *, now: datetime, lease: timedelta, retention: timedelta
    ) -> Claim:
        """Returns whether this handler may process `event` (recording it on first sight)."""
        try:
            before = await self._inbox.find_one_and_update(
                {"_id": event.id},
                {
                    "$setOnInsert": {
                        "event": event.model_dump(mode="json"),
                        "state": InboxState.PENDING.value,
                        "received_at": now,
                        "lease_until": now + lease,
                        "expires_at": now + retention,
                    }
                },
                upsert=True,
                return_document="before",
            )
        except DuplicateKey:  # a concurrent first sight won the insert
            before = await self._inbox.find_one({"_id": event.id})
        if before is None:
            return Claim.OWNED
        if before.get("state") == InboxState.DONE:
            return Claim.DONE
        return Claim.OWNED if await self.take_over(event.id, now=now, lease=lease) else Claim.BUSY

    async def take_over(self, event_id: str, *, now: datetime, lease: timedelta) -> bool:
        """Returns whether the expired lease of an unfinished event was taken (atomic)."""
        taken = await self._inbox.find_one_and_update(
            {"_id": event_id, "state": InboxState.PENDING.value, "lease_until": {"$lte": now}},
            {"$set": {"lease_until": now + lease}},
        )
        return taken is not None

    async def release(self, event_id: str, *, now: datetime) -> None:
        """Ends the lease of an unfinished event at once (its handler failed; the bus's retry,
        or the next re-drive, takes it over without waiting for the lease to run out)."""
        await self._inbox.update_one(
            {"_id": event_id, "state": InboxState.PENDING.value}, {"$set": {"lease_until": now}}
        )

    async def stale_events(self, *, now: datetime, limit: int = 100) -> list[Event]:
        """Returns unfinished events whose lease ran out (their handler died)."""
        docs = await self._inbox.find(
            {"state": InboxState.PENDING.value, "lease_until": {"$lte": now}},
            sort=[("lease_until", 1)],
            limit=limit,
        )
        return [Event.model_validate(doc["event"]) for doc in docs]

    async def finish(self, event_id: str, *, now: datetime) -> None:
        """Records that every effect of the event is stored."""
        await self._inbox.update_one(
            {"_id": event_id},
            {"$set": {"state": InboxState.DONE.value, "done_at": now}, "$unset": {"event": ""}},
        )

    # -- step 1: the video document --------------------------------------------------------

    async def video(self, video_id: str) -> VideoRecord | None:
        doc = await self._videos.find_one({"_id": video_id})
        return None if doc is None else VideoRecord.from_doc(doc)

    async def transition_video(
        self,
        *,
        video_id: str,
        account_id: str,
        event_id: str,
        compute: Compute,
        now: datetime,
    ) -> Applied:
        """Returns the counter changes of applying an event to the video's state.

        `compute(state) -> (state | None, delta)` gives the new state (None: no change). The
        write is a compare-and-set on `version` that also records the event's marker, so the
        state change and "this event was applied here, owing `delta`" are one atomic write.
        An event already marked returns the delta it recorded.
        """
        for _ in range(_CAS_ATTEMPTS):
            doc = await self._videos.find_one({"_id": video_id})
            if doc is not None and event_id in (doc.get("pending_ids") or ()):
                return Applied(marker_delta(doc, event_id), VideoRecord.from_doc(doc))
            new_state, change = compute(state_from_doc(doc))
            if new_state is None:
                return Applied({}, None if doc is None else VideoRecord.from_doc(doc))
            fields = state_fields(new_state)
            marker = {"evt": event_id, "delta": change}
            if doc is None:
                new = {
                    "_id": video_id,
                    "account_id": account_id,
                    **fields,
                    "views": 0,
                    "version": 1,
                    "pending": [marker],
                    "pending_ids": [event_id],
                    "pending_count": 1,
                    "created_at": now,
                    "updated_at": now,
                }
                try:
                    await self._videos.insert_one(new)
                except DuplicateKey:
                    continue
                return Applied(change, VideoRecord.from_doc(new))
            result = await self._videos.find_one_and_update(
                {"_id": video_id, "version": doc.get("version", 0)},
                {
                    "$set": {**fields, "updated_at": now},
                    "$inc": {"version": 1, "pending_count": 1},
                    "$push": {"pending": marker, "pending_ids": event_id},
                },
            )
            if result is not None:
                return Applied(change, VideoRecord.from_doc(result))
        raise Conflict(f"video {video_id} kept changing; event {event_id} will be retried")

    async def add_view(
        self, *, video_id: str, account_id: str, event_id: str, now: datetime
    ) -> Applied:
        """Returns the counter changes of one view: +1 unless the video is deleted.

        One atomic update (no compare-and-set: views are the hot path) increments `views` and
        `version` and records the marker, conditioned on the event not being marked yet.
        """
        change: Delta = {"total_views": 1}
        marker = {"evt": event_id, "delta": change}
        try:
            doc = await self._videos.find_one_and_update(
                {"_id": video_id, "deleted": {"$ne": True}, "pending_ids": {"$ne": event_id}},
                {
                    "$inc": {"views": 1, "version": 1, "pending_count": 1},
                    "$push": {"pending": marker, "pending_ids": event_id},
                    "$set": {"updated_at": now},
                    "$setOnInsert": {
                        "account_id": account_id,
                        "listed": False,
                        "deleted": False,
                        "created_at": now,
                    },
                },
                upsert=True,
            )
        except DuplicateKey:
            # The document exists and the filter did not match it: deleted, or already marked.
            doc = await self._videos.find_one({"_id": video_id})
            if doc is None:
                raise Conflict(f"video {video_id} vanished; view {event_id} retried") from None
            if event_id in (doc.get("pending_ids") or ()):
                return Applied(marker_delta(doc, event_id), VideoRecord.from_doc(doc))
            return Applied({}, VideoRecord.from_doc(doc))
        return Applied(change, None if doc is None else VideoRecord.from_doc(doc))

    async def clear_video_marker(self, video_id: str, event_id: str) -> None:
        await self._videos.update_one(
            {"_id": video_id, "pending_ids": event_id},
            {
                "$pull": {"pending": {"evt": event_id}, "pending_ids": event_id},
                "$inc": {"pending_count": -1},
            },
        )

    async def videos_with_markers(
        self, *, updated_before: datetime, limit: int = 100
    ) -> list[VideoRecord]:
        """Returns videos still holding markers, untouched since `updated_before`."""
        docs = await self._videos.find(
            {"pending_count": {"$gt": 0}, "updated_at": {"$lte": updated_before}},
            sort=[("updated_at", 1)],
            limit=limit,
        )
        return [VideoRecord.from_doc(doc) for doc in docs]

    async def event_states(self, event_ids: list[str]) -> dict[str, InboxState]:
        """Returns event id -> inbox state for the ids still remembered."""
        docs = await self._inbox.find({"_id": {"$in": event_ids}})
        return {doc["_id"]: InboxState(doc.get("state", InboxState.PENDING)) for doc in docs}

    async def remember_fired(self, video_id: str, threshold: int) -> None:
        """Caches on the video that `threshold` fired (saves a duplicate insert per view)."""
        await self._videos.update_one({"_id": video_id}, {"$addToSet": {"fired": threshold}})

    # -- step 2: the account document ------------------------------------------------------

    async def apply_to_account(self, *, account_id: str, event_id: str, delta: Delta) -> None:
        """Adds `delta` to the account's counters once: conditioned on the event not being in
        `applied`, and recording it there in the same atomic update."""
        inc = {name: value for name, value in delta.items() if value and name in COUNTERS}
        if not inc:
            return
        for _ in range(_CAS_ATTEMPTS):
            try:
                await self._accounts.update_one(
                    {"_id": account_id, "applied": {"$ne": event_id}},
                    {"$inc": inc, "$push": {"applied": event_id}},
                    upsert=True,
                )
                return
            except DuplicateKey:
                # Either already applied, or a concurrent upsert created the document first.
                doc = await self._accounts.find_one({"_id": account_id})
                if doc is not None and event_id in (doc.get("applied") or ()):
                    return
        raise Conflict(f"account counters of {account_id} could not be updated")

    async def clear_account_marker(self, account_id: str, event_id: str) -> None:
        await self._accounts.update_one(
            {"_id": account_id, "applied": event_id}, {"$pull": {"applied": event_id}}
        )

    # -- view thresholds: fire records and the outbox --------------------------------------

    async def record_fire(self, fire: Fire, *, now: datetime) -> bool:
        """Returns True when this call fired the threshold (False: it had fired before)."""
        try:
            await self._fires.insert_one(fire.to_doc(now=now))
        except DuplicateKey:
            return False
        return True

    async def mark_published(self, fire_id_: str, *, now: datetime) -> None:
        await self._fires.update_one(
            {"_id": fire_id_}, {"$set": {"published": True, "published_at": now}}
        )

    async def unpublished_fires(self, *, created_before: datetime, limit: int = 100) -> list[Fire]:
        """Returns fires recorded before `created_before` whose event was not published yet."""
        docs = await self._fires.find(
            {"published": False, "created_at": {"$lte": created_before}},
            sort=[("created_at", 1)],
            limit=limit,
        )
        return [Fire.from_doc(doc) for doc in docs]
