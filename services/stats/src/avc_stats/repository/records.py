"""The typed records of the stats database and their document mapping: the one place that knows
the field names (`store` builds its filters from them too)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from avc_common.timeutil import ensure_utc
from avc_stats.state import STATUSES, Delta, OrderKey, VideoState, VideoStatus


class InboxState(StrEnum):
    """Where an event received is: being counted, or every effect stored."""

    PENDING = "pending"
    DONE = "done"


class Claim(enum.Enum):
    OWNED = "owned"
    """This handler holds the lease: process the event."""
    DONE = "done"
    """Processed before: nothing to do but clear leftover markers."""
    BUSY = "busy"
    """Another handler holds a live lease; it (or the re-drive) finishes the event."""


@dataclass(frozen=True)
class AccountCounters:
    """An account's counters (all zero before its first event)."""

    total_videos: int = 0
    total_views: int = 0
    storage_used_bytes: int = 0
    videos_by_status: Mapping[VideoStatus, int] = field(
        default_factory=lambda: dict.fromkeys(STATUSES, 0)
    )

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any] | None) -> AccountCounters:
        if doc is None:
            return cls()
        by_status = doc.get("videos_by_status") or {}
        return cls(
            total_videos=int(doc.get("total_videos", 0)),
            total_views=int(doc.get("total_views", 0)),
            storage_used_bytes=int(doc.get("storage_used_bytes", 0)),
            videos_by_status={s: int(by_status.get(s.value, 0)) for s in STATUSES},
        )


@dataclass(frozen=True)
class VideoRecord:
    """One video as stats knows it: its state, the account it counts for, the thresholds it
    fired and the events applied to it but not finished yet (`pending_ids`)."""

    id: str
    account_id: str
    state: VideoState
    fired: frozenset[int] = frozenset()
    pending_ids: tuple[str, ...] = ()

    @property
    def views(self) -> int:
        return self.state.views

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> VideoRecord:
        return cls(
            id=str(doc["_id"]),
            account_id=str(doc["account_id"]),
            state=state_from_doc(doc),
            fired=frozenset(int(t) for t in doc.get("fired") or ()),
            pending_ids=tuple(str(i) for i in doc.get("pending_ids") or ()),
        )


def state_from_doc(doc: Mapping[str, Any] | None) -> VideoState:
    """Returns the state stored in a video document (the empty state for None)."""
    if doc is None:
        return VideoState()
    outcome = doc.get("outcome")
    return VideoState(
        listed=bool(doc.get("listed", False)),
        deleted=bool(doc.get("deleted", False)),
        source_bytes=int(doc.get("source_bytes", 0)),
        renditions_bytes=int(doc.get("renditions_bytes", 0)),
        renditions_key=_key(doc.get("renditions_key")),
        outcome=VideoStatus(outcome) if outcome else None,
        outcome_key=_key(doc.get("outcome_key")),
        views=int(doc.get("views", 0)),
    )


def state_fields(state: VideoState) -> dict[str, Any]:
    """Returns the document fields holding `state` (`views` is left to `$inc`)."""
    return {
        "listed": state.listed,
        "deleted": state.deleted,
        "source_bytes": state.source_bytes,
        "renditions_bytes": state.renditions_bytes,
        "renditions_key": list(state.renditions_key) if state.renditions_key else None,
        "outcome": state.outcome.value if state.outcome else None,
        "outcome_key": list(state.outcome_key) if state.outcome_key else None,
    }


def _key(value: Any) -> OrderKey | None:
    if not value:
        return None
    micros, event_id = value
    return (int(micros), str(event_id))


def marker_delta(doc: Mapping[str, Any], event_id: str) -> Delta:
    """Returns the counter change the event's marker on a video document recorded."""
    for entry in doc.get("pending") or ():
        if entry.get("evt") == event_id:
            return {str(k): int(v) for k, v in (entry.get("delta") or {}).items()}
    return {}


@dataclass(frozen=True)
class Applied:
    """What step 1 (the video document) left for the account document."""

    delta: Delta
    video: VideoRecord | None


@dataclass(frozen=True)
class Fire:
    id: str
    account_id: str
    video_id: str
    threshold: int
    views: int
    event_id: str
    request_id: str | None
    occurred_at: datetime

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Fire:
        return cls(
            id=doc["_id"],
            account_id=doc["account_id"],
            video_id=doc["video_id"],
            threshold=int(doc["threshold"]),
            views=int(doc["views"]),
            event_id=doc["event_id"],
            request_id=doc.get("request_id"),
            occurred_at=ensure_utc(doc["occurred_at"]),
        )

    def to_doc(self, *, now: datetime) -> dict[str, Any]:
        return {
            "_id": self.id,
            "account_id": self.account_id,
            "video_id": self.video_id,
            "threshold": self.threshold,
            "views": self.views,
            "event_id": self.event_id,
            "request_id": self.request_id,
            "occurred_at": self.occurred_at,
            "published": False,
            "created_at": now,
        }


def fire_id(video_id: str, threshold: int) -> str:
    """Returns the `_id` of the fire of `threshold` for `video_id` (one per pair, ever)."""
    return f"{video_id}:{threshold}"
