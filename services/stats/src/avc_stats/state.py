"""What one video contributes to its account's counters, as a pure function of the events seen.

A video's state is a merge of facts (uploaded, encoded or failed — the later one by
`occurred_at` wins —, deleted, views), so the result does not depend on the order events arrive
in: `video.encoded` before `video.uploaded` on a redelivery gives the same state as the other
way round. `video.deleted` is final: whatever arrives after it changes nothing.

The account counters are the sum of every video's `contribution`; applying an event adds
`contribution(after) - contribution(before)` to them, so a delete takes away exactly what that
video had added (its source and rendition bytes as counted here), whatever the event's own
`bytes_freed` says.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Final

from avc_common.events import (
    Event,
    VideoDeleted,
    VideoEncoded,
    VideoFailed,
    VideoUploaded,
    VideoViewed,
)


class VideoStatus(StrEnum):
    """A counted video's status, as `videos_by_status` splits them."""

    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


STATUSES: Final = tuple(VideoStatus)
COUNTERS: Final = (
    "total_videos",
    "total_views",
    "storage_used_bytes",
    "videos_by_status.processing",
    "videos_by_status.ready",
    "videos_by_status.failed",
)
LIFECYCLE_TYPES: Final = frozenset(
    {VideoUploaded.type, VideoEncoded.type, VideoFailed.type, VideoDeleted.type}
)
VIEW_TYPE: Final = VideoViewed.type
HANDLED_TYPES: Final = LIFECYCLE_TYPES | {VIEW_TYPE}

Delta = dict[str, int]
OrderKey = tuple[int, str]
"""(microseconds since the epoch of `occurred_at`, event id): a total order over events."""


def event_key(event: Event) -> OrderKey:
    """Returns the key that decides which of two events is the later one."""
    micros = int(event.occurred_at.timestamp()) * 1_000_000 + event.occurred_at.microsecond
    return (micros, event.id)


@dataclass(frozen=True)
class VideoState:
    listed: bool = False
    """A lifecycle event (uploaded, encoded, failed) was seen: the video is counted."""
    deleted: bool = False
    source_bytes: int = 0
    renditions_bytes: int = 0
    renditions_key: OrderKey | None = None
    outcome: VideoStatus | None = None
    """READY or FAILED once encoded or failed (the later event wins); None before."""
    outcome_key: OrderKey | None = None
    views: int = 0

    @property
    def status(self) -> VideoStatus:
        return self.outcome or VideoStatus.PROCESSING


def _later(key: OrderKey, than: OrderKey | None) -> bool:
    return than is None or key > than


def transition(state: VideoState, event: Event) -> VideoState:
    """Returns the state after `event` (unchanged for events after a delete or not handled)."""
    if state.deleted or event.type not in HANDLED_TYPES:
        return state
    payload = event.payload()
    key = event_key(event)
    if isinstance(payload, VideoUploaded):
        return replace(state, listed=True, source_bytes=payload.size_bytes)
    if isinstance(payload, VideoEncoded):
        new = replace(state, listed=True)
        if _later(key, state.renditions_key):
            new = replace(new, renditions_bytes=payload.renditions_bytes, renditions_key=key)
        if _later(key, state.outcome_key):
            new = replace(new, outcome=VideoStatus.READY, outcome_key=key)
        return new
    if isinstance(payload, VideoFailed):
        new = replace(state, listed=True)
        if _later(key, state.outcome_key):
            new = replace(new, outcome=VideoStatus.FAILED, outcome_key=key)
        return new
    if isinstance(payload, VideoDeleted):
        return replace(state, deleted=True)
    return replace(state, views=state.views + 1)  # video.viewed


def contribution(state: VideoState) -> Delta:
    """Returns what the video adds to its account's counters (nothing once deleted)."""
    out = dict.fromkeys(COUNTERS, 0)
    if state.deleted:
        return out
    out["total_views"] = state.views
    if state.listed:
        out["total_videos"] = 1
        out["storage_used_bytes"] = state.source_bytes + state.renditions_bytes
        out[f"videos_by_status.{state.status}"] = 1
    return out


def delta(before: VideoState, after: VideoState) -> Delta:
    """Returns the non-zero counter changes of going from `before` to `after`."""
    old, new = contribution(before), contribution(after)
    return {name: new[name] - old[name] for name in COUNTERS if new[name] != old[name]}
