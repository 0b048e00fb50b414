"""The stats records: the repository maps documents to typed values and back, losslessly."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from avc_stats.repository.records import (
    AccountCounters,
    Fire,
    VideoRecord,
    state_fields,
    state_from_doc,
)
from avc_stats.state import STATUSES, VideoState, VideoStatus

keys = st.none() | st.tuples(st.integers(0, 2**62), st.text(min_size=1, max_size=8))
states = st.builds(
    VideoState,
    listed=st.booleans(),
    deleted=st.booleans(),
    source_bytes=st.integers(0, 2**50),
    renditions_bytes=st.integers(0, 2**50),
    renditions_key=keys,
    outcome=st.none() | st.sampled_from([VideoStatus.READY, VideoStatus.FAILED]),
    outcome_key=keys,
    views=st.integers(0, 2**40),
)


@given(states)
def test_a_video_state_survives_its_document(state: VideoState) -> None:
    doc = {**state_fields(state), "views": state.views}
    assert state_from_doc(doc) == state
    assert doc["outcome"] is None or type(doc["outcome"]) is str  # stored as plain text


def test_status_is_a_str_enum_and_processing_until_an_outcome() -> None:
    assert VideoState().status is VideoStatus.PROCESSING
    assert VideoState(outcome=VideoStatus.FAILED).status == "failed"
    assert [s.value for s in STATUSES] == ["processing", "ready", "failed"]


def test_account_counters_default_to_zero_for_every_status() -> None:
    zero = AccountCounters.from_doc(None)
    assert (zero.total_videos, zero.total_views, zero.storage_used_bytes) == (0, 0, 0)
    assert dict(zero.videos_by_status) == dict.fromkeys(STATUSES, 0)
    stored = AccountCounters.from_doc({"total_views": 7, "videos_by_status": {"ready": 2}})
    assert stored.total_views == 7
    assert stored.videos_by_status[VideoStatus.READY] == 2
    assert stored.videos_by_status[VideoStatus.FAILED] == 0


def test_a_video_record_reads_markers_and_fired_thresholds() -> None:
    record = VideoRecord.from_doc(
        {"_id": "vid_1", "account_id": "acct_1", "views": 3, "fired": [100], "pending_ids": ["e"]}
    )
    assert record.views == 3
    assert record.fired == frozenset({100})
    assert record.pending_ids == ("e",)


def test_a_fire_survives_its_document() -> None:
    fire = Fire("v:1", "acct", "v", 1, 2, "evt_1", None, datetime(2026, 1, 1, tzinfo=UTC))
    assert Fire.from_doc(fire.to_doc(now=datetime(2026, 1, 2, tzinfo=UTC))) == fire
