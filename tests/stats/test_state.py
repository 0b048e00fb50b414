"""The pure state model: what one video contributes, whatever order its events arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from avc_common.events import Event
from avc_stats.state import (
    COUNTERS,
    VideoState,
    contribution,
    delta,
    transition,
)

from .conftest import deleted, encoded, failed, uploaded, viewed

ACCOUNT = "acct_test"


def at(event: Event, seconds: int) -> Event:
    return event.model_copy(
        update={"occurred_at": datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)}
    )


def run(events: list[Event]) -> VideoState:
    state = VideoState()
    for event in events:
        state = transition(state, event)
    return state


def test_each_event_moves_the_counters() -> None:
    state = transition(VideoState(), uploaded("v", ACCOUNT, 1000))
    assert contribution(state)["total_videos"] == 1
    assert contribution(state)["videos_by_status.processing"] == 1
    assert contribution(state)["storage_used_bytes"] == 1000

    after = transition(state, encoded("v", ACCOUNT, 500))
    assert delta(state, after) == {
        "storage_used_bytes": 500,
        "videos_by_status.processing": -1,
        "videos_by_status.ready": 1,
    }
    viewed_state = transition(after, viewed("v", ACCOUNT))
    assert delta(after, viewed_state) == {"total_views": 1}
    gone = transition(viewed_state, deleted("v", ACCOUNT, bytes_freed=123456))
    # Exactly what the video had added, whatever bytes_freed says.
    assert delta(viewed_state, gone) == {
        "total_videos": -1,
        "total_views": -1,
        "storage_used_bytes": -1500,
        "videos_by_status.ready": -1,
    }
    assert transition(gone, encoded("v", ACCOUNT, 9)) == gone


def test_failed_then_encoded_takes_the_later_one_by_occurred_at() -> None:
    fail = at(failed("v", ACCOUNT), 10)
    enc = at(encoded("v", ACCOUNT, 7), 5)
    assert run([fail, enc]).status == "failed"
    assert run([enc, fail]).status == "failed"
    assert run([enc, fail]).renditions_bytes == 7


def test_encoded_before_uploaded() -> None:
    state = run([encoded("v", ACCOUNT, 300), uploaded("v", ACCOUNT, 700)])
    assert state.status == "ready"
    assert contribution(state)["storage_used_bytes"] == 1000
    assert contribution(state)["videos_by_status.processing"] == 0


_events = st.lists(
    st.sampled_from(["uploaded", "encoded", "failed", "viewed", "deleted"]), min_size=1, max_size=8
)


@settings(max_examples=200, deadline=None)
@given(kinds=_events, order=st.randoms(use_true_random=False))
def test_any_arrival_order_ends_in_the_same_contribution(kinds: list[str], order: object) -> None:
    makers = {
        "uploaded": lambda: uploaded("v", ACCOUNT, 1000),
        "encoded": lambda: encoded("v", ACCOUNT, 250),
        "failed": lambda: failed("v", ACCOUNT),
        "viewed": lambda: viewed("v", ACCOUNT),
        "deleted": lambda: deleted("v", ACCOUNT),
    }
    # Real lifecycles have at most one delete, and it comes last in time.
    kinds = [k for k in kinds if k != "deleted"] + (["deleted"] if "deleted" in kinds else [])
    events = [at(makers[kind](), i) for i, kind in enumerate(kinds)]
    shuffled = list(events)
    order.shuffle(shuffled)  # type: ignore[attr-defined]
    in_time = contribution(run(events))
    arrived = contribution(run(shuffled))
    if "deleted" in kinds:
        assert arrived == in_time == dict.fromkeys(COUNTERS, 0)
    else:
        assert arrived == in_time
        assert sum(in_time[f"videos_by_status.{s}"] for s in ("processing", "ready", "failed")) == (
            1 if set(kinds) - {"viewed"} else 0
        )
