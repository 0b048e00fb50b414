"""Counters from video events: each one, replays, out-of-order delivery, deletes, crashes."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from tests.support.assertions import assert_error, eventually

from avc_common.ids import new_id
from avc_common.timeutil import utcnow
from avc_stats.config import StatsSettings
from avc_stats.repository import StatsRepository
from avc_stats.state import VideoState

from .conftest import StatsHarness, auth, deleted, encoded, failed, uploaded, viewed

ZERO = {
    "total_videos": 0,
    "total_views": 0,
    "storage_used_bytes": 0,
    "videos_by_status": {"processing": 0, "ready": 0, "failed": 0},
}


async def test_an_account_without_events_has_zero_counters(harness: StatsHarness) -> None:
    assert await harness.stats() == ZERO


async def test_stats_need_the_gateway_token(harness: StatsHarness) -> None:
    response = await harness.client.get("/api/v1/stats")
    assert_error(response, 401, "unauthorized")


async def test_each_counter_follows_the_events(harness: StatsHarness) -> None:
    acct = harness.account_id
    a, b, c = new_id("vid"), new_id("vid"), new_id("vid")

    await harness.publish_and_settle(uploaded(a, acct, 1000), uploaded(b, acct, 2000))
    assert await harness.stats() == {
        "total_videos": 2,
        "total_views": 0,
        "storage_used_bytes": 3000,
        "videos_by_status": {"processing": 2, "ready": 0, "failed": 0},
    }

    await harness.publish_and_settle(encoded(a, acct, 500), failed(b, acct), uploaded(c, acct, 10))
    assert await harness.stats() == {
        "total_videos": 3,
        "total_views": 0,
        "storage_used_bytes": 3510,
        "videos_by_status": {"processing": 1, "ready": 1, "failed": 1},
    }

    views = [viewed(a, acct) for _ in range(3)] + [viewed(c, acct)]
    await harness.publish_and_settle(*views)
    stats = await harness.stats()
    assert stats["total_views"] == 4
    video = await harness.service._repo.video(a)
    assert video is not None
    assert video.views == 3

    # Another account sees none of it.
    assert await harness.stats(new_id("acct")) == ZERO


async def test_replaying_every_event_twice_changes_nothing(harness: StatsHarness) -> None:
    acct = harness.account_id
    a, b = new_id("vid"), new_id("vid")
    events = [
        uploaded(a, acct, 1000),
        uploaded(b, acct, 300),
        encoded(a, acct, 400),
        failed(b, acct),
        viewed(a, acct),
        viewed(a, acct),
        viewed(b, acct),
        deleted(b, acct),
    ]
    await harness.publish_and_settle(*events)
    before = await harness.stats()
    assert before == {
        "total_videos": 1,
        "total_views": 2,
        "storage_used_bytes": 1400,
        "videos_by_status": {"processing": 0, "ready": 1, "failed": 0},
    }

    # Sequentially, then all at once (concurrent duplicates), then once more.
    await harness.publish_and_settle(*events)
    await asyncio.gather(*(harness.bus.publish(e) for e in events + events))
    await harness.publish_and_settle(*events)
    await asyncio.sleep(0.2)  # let any stray duplicate finish
    assert await harness.stats() == before

    # No marker is left behind on the documents.
    db = harness.app.state.documents
    assert await db.collection("videos").count({"pending_count": {"$gt": 0}}) == 0
    account = await db.collection("accounts").find_one({"_id": acct})
    assert account is not None
    assert account["applied"] == []


async def test_encoded_before_uploaded_does_not_corrupt_status_counts(
    harness: StatsHarness,
) -> None:
    acct = harness.account_id
    video = new_id("vid")
    await harness.publish_and_settle(encoded(video, acct, 250))
    assert (await harness.stats())["videos_by_status"] == {"processing": 0, "ready": 1, "failed": 0}

    await harness.publish_and_settle(uploaded(video, acct, 750))
    assert await harness.stats() == {
        "total_videos": 1,
        "total_views": 0,
        "storage_used_bytes": 1000,
        "videos_by_status": {"processing": 0, "ready": 1, "failed": 0},
    }


async def test_delete_lowers_storage_by_exactly_that_videos_bytes(harness: StatsHarness) -> None:
    acct = harness.account_id
    keep, drop = new_id("vid"), new_id("vid")
    await harness.publish_and_settle(
        uploaded(keep, acct, 5000),
        encoded(keep, acct, 1000),
        uploaded(drop, acct, 700),
        encoded(drop, acct, 300),
        viewed(drop, acct),
    )
    assert (await harness.stats())["storage_used_bytes"] == 7000

    # bytes_freed disagrees with what was counted: the counted bytes are what goes.
    await harness.publish_and_settle(deleted(drop, acct, bytes_freed=999_999))
    assert await harness.stats() == {
        "total_videos": 1,
        "total_views": 0,
        "storage_used_bytes": 6000,
        "videos_by_status": {"processing": 0, "ready": 1, "failed": 0},
    }

    # Late events for the deleted video change nothing.
    await harness.publish_and_settle(viewed(drop, acct), encoded(drop, acct, 50))
    assert (await harness.stats())["storage_used_bytes"] == 6000


async def test_a_handler_that_died_mid_event_is_finished_by_the_redrive_once(
    harness: StatsHarness,
) -> None:
    acct = harness.account_id
    video = new_id("vid")
    await harness.publish_and_settle(uploaded(video, acct, 100))
    repo: StatsRepository = harness.service._repo
    view = viewed(video, acct)

    # A handler claims the event and applies it to the video, then dies before the account.
    now = utcnow()
    lease = timedelta(seconds=0)
    await repo.claim(view, now=now, lease=lease, retention=timedelta(days=1))
    await repo.add_view(video_id=video, account_id=acct, event_id=view.id, now=now)
    assert (await harness.stats())["total_views"] == 0

    # Redelivery while the (dead) handler's lease runs: the marker stops a second +1.
    await harness.publish_and_settle(view)
    assert (await harness.stats())["total_views"] == 1
    await harness.service.redrive()
    await harness.publish_and_settle(view)
    assert (await harness.stats())["total_views"] == 1


async def test_redrive_takes_over_an_expired_lease(harness: StatsHarness) -> None:
    acct = harness.account_id
    video = new_id("vid")
    repo: StatsRepository = harness.service._repo
    event = uploaded(video, acct, 4242)
    now = utcnow()
    await repo.claim(event, now=now, lease=timedelta(seconds=0), retention=timedelta(days=1))
    # The bus copy was lost with the handler; only the inbox knows about the event.
    await harness.service.redrive()
    assert (await harness.stats())["storage_used_bytes"] == 4242
    await harness.service.redrive()
    await harness.publish_and_settle(event)
    assert (await harness.stats())["storage_used_bytes"] == 4242


async def test_a_crash_after_finishing_leaves_markers_the_redrive_clears(
    harness: StatsHarness,
) -> None:
    acct = harness.account_id
    video = new_id("vid")
    repo: StatsRepository = harness.service._repo
    event = uploaded(video, acct, 10)
    now = utcnow() - timedelta(hours=1)
    await repo.claim(event, now=now, lease=timedelta(minutes=5), retention=timedelta(days=1))

    def compute(before: VideoState) -> tuple[VideoState, dict[str, int]]:
        return VideoState(listed=True, source_bytes=10), {
            "total_videos": 1,
            "storage_used_bytes": 10,
            "videos_by_status.processing": 1,
        }

    applied = await repo.transition_video(
        video_id=video, account_id=acct, event_id=event.id, compute=compute, now=now
    )
    await repo.apply_to_account(account_id=acct, event_id=event.id, delta=applied.delta)
    await repo.finish(event.id, now=now)
    # ...and the process died before clearing the markers.
    await harness.service.redrive()
    db = harness.app.state.documents
    assert await db.collection("videos").count({"pending_count": {"$gt": 0}}) == 0
    assert (await db.collection("accounts").find_one({"_id": acct}) or {})["applied"] == []
    await harness.publish_and_settle(event)
    assert (await harness.stats())["storage_used_bytes"] == 10


async def test_unknown_video_event_types_are_ignored(harness: StatsHarness) -> None:
    from avc_common.events import Event

    odd = Event(type="video.renamed", account_id=harness.account_id, data={"video_id": "x"})
    await harness.bus.publish(odd)
    await asyncio.sleep(0.1)
    assert await harness.stats() == ZERO
    assert await harness.bus.dead_letters("stats.events") == []


async def test_metrics_count_events(harness: StatsHarness) -> None:
    await harness.publish_and_settle(uploaded(new_id("vid"), harness.account_id, 1))
    metrics = await harness.client.get("/metrics")
    assert 'avc_stats_events_total{result="applied",type="video.uploaded"} 1.0' in metrics.text
    response = await harness.client.get("/api/v1/stats", headers=auth(harness.account_id))
    assert response.status_code == 200


async def test_a_failing_handler_is_retried_by_the_bus_at_once(harness: StatsHarness) -> None:
    acct = harness.account_id
    repo = harness.service._repo
    real = repo.apply_to_account
    failures = 0

    async def flaky(**kwargs: object) -> None:
        nonlocal failures
        if failures < 2:
            failures += 1
            raise RuntimeError("database hiccup")
        await real(**kwargs)  # type: ignore[arg-type]

    repo.apply_to_account = flaky  # type: ignore[method-assign]
    event = uploaded(new_id("vid"), acct, 77)
    # Bus retries after 1 s and 2 s: well within the 300 s lease the failed handler held.
    await harness.publish(event)
    await harness.settle(event)
    assert failures == 2
    assert (await harness.stats())["storage_used_bytes"] == 77
    assert await harness.bus.dead_letters("stats.events") == []


@pytest.mark.parametrize(
    "stats_settings", [StatsSettings(redrive_interval_seconds=0.05)], ids=["fast-redrive"]
)
async def test_the_app_redrives_periodically_without_being_asked(harness: StatsHarness) -> None:
    """The lifespan runs the re-drive on `avc_common.periodic`: an event left in the inbox by a
    dead handler is counted by a later pass, nobody calling `redrive()`."""
    acct = harness.account_id
    video = new_id("vid")
    repo: StatsRepository = harness.service._repo
    redrive = harness.app.state.stats_redrive
    await eventually(lambda: redrive.stats.passes >= 1)
    event = uploaded(video, acct, 777)
    await repo.claim(event, now=utcnow(), lease=timedelta(seconds=0), retention=timedelta(days=1))
    passes = redrive.stats.passes

    async def counted() -> bool:
        return (await harness.stats())["storage_used_bytes"] == 777

    await eventually(counted)
    # The pass that counted it bumps `passes` only once it returns, a moment after the count.
    await eventually(lambda: redrive.stats.passes > passes)
    assert redrive.stats.failures == 0
    assert redrive.running
