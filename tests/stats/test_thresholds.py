"""View thresholds: the API, and `view.threshold` firing once per video and threshold."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.support.assertions import assert_error, eventually

from avc_common.bus import PublishFailed
from avc_common.events import Event
from avc_common.ids import new_id
from avc_stats.repository import fire_id

from .conftest import StatsHarness, auth, deleted, uploaded, viewed


async def test_thresholds_default_and_replace(harness: StatsHarness) -> None:
    url = "/api/v1/stats/thresholds"
    response = await harness.client.get(url, headers=auth(harness.account_id))
    assert response.json() == {"views": [100, 1000, 10000]}

    # JSON whatever the Content-Type says (curl -d sends form-urlencoded); sorted, unique.
    response = await harness.client.put(
        url,
        headers={**auth(harness.account_id), "Content-Type": "application/x-www-form-urlencoded"},
        content=b'{"views": [500, 5, 50, 5]}',
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"views": [5, 50, 500]}
    response = await harness.client.get(url, headers=auth(harness.account_id))
    assert response.json() == {"views": [5, 50, 500]}
    # Per account.
    other = await harness.client.get(url, headers=auth(new_id("acct")))
    assert other.json() == {"views": [100, 1000, 10000]}

    response = await harness.client.put(url, headers=auth(harness.account_id), json={"views": []})
    assert response.json() == {"views": []}


@pytest.mark.parametrize(
    "body",
    [
        {"views": [0]},
        {"views": [-5]},
        {"views": [1.5]},
        {"views": ["100"]},
        {"views": [True]},
        {"views": list(range(1, 22))},
        {"views": 100},
        {},
        [100],
    ],
)
async def test_invalid_thresholds_are_422(harness: StatsHarness, body: Any) -> None:
    response = await harness.client.put(
        "/api/v1/stats/thresholds", headers=auth(harness.account_id), json=body
    )
    data = assert_error(response, 422, "validation_error")
    assert "details" in data


async def test_a_body_that_is_not_json_is_400(harness: StatsHarness) -> None:
    response = await harness.client.put(
        "/api/v1/stats/thresholds", headers=auth(harness.account_id), content=b"views=1"
    )
    assert_error(response, 400, "bad_request")


async def spy(harness: StatsHarness) -> list[Event]:
    seen: list[Event] = []

    async def record(event: Event) -> None:
        seen.append(event)

    await harness.bus.subscribe("test.spy", ["view.threshold"], record)
    return seen


async def test_concurrent_views_across_a_threshold_fire_exactly_once(
    harness: StatsHarness,
) -> None:
    acct = harness.account_id
    await harness.service.set_thresholds(account_id=acct, views=[10, 25, 1000])
    seen = await spy(harness)
    video = new_id("vid")
    await harness.publish_and_settle(uploaded(video, acct, 1))

    views = [viewed(video, acct) for _ in range(40)]
    # All at once, each one twice: the consumer runs up to 16 handlers concurrently.
    await asyncio.gather(*(harness.bus.publish(e) for e in views + views))
    await harness.settle(*views)
    await asyncio.sleep(0.2)

    assert (await harness.stats())["total_views"] == 40
    fired = sorted((e.data["threshold"], e.data["video_id"]) for e in seen)
    assert fired == [(10, video), (25, video)]
    for event in seen:
        assert event.type == "view.threshold"
        assert event.account_id == acct
        assert event.data["views"] >= event.data["threshold"]
    fires = harness.app.state.documents.collection("threshold_fires")
    assert await fires.count({"published": True}) == 2


async def test_each_video_fires_on_its_own_and_deleted_videos_do_not(
    harness: StatsHarness,
) -> None:
    acct = harness.account_id
    await harness.service.set_thresholds(account_id=acct, views=[2])
    seen = await spy(harness)
    a, b, c = new_id("vid"), new_id("vid"), new_id("vid")
    await harness.publish_and_settle(deleted(c, acct))
    events = [viewed(v, acct) for v in (a, a, b, b, b, c, c, c)]
    await harness.publish_and_settle(*events)
    await eventually(lambda: _ready(seen, 2))
    await asyncio.sleep(0.1)
    assert sorted(e.data["video_id"] for e in seen) == sorted([a, b])


async def _ready(seen: list[Event], n: int) -> bool:
    return len(seen) >= n


async def test_a_recorded_fire_that_was_not_published_is_redriven(
    harness: StatsHarness,
) -> None:
    acct = harness.account_id
    await harness.service.set_thresholds(account_id=acct, views=[1])
    seen = await spy(harness)
    video = new_id("vid")

    publish = harness.service._bus.publish
    calls = 0

    async def broken(event: Event) -> None:
        nonlocal calls
        if event.type != "view.threshold":
            return await publish(event)
        calls += 1
        raise PublishFailed("broker gone")

    async def attempted() -> bool:
        return calls >= 1

    harness.service._bus.publish = broken  # type: ignore[method-assign]
    try:
        await harness.publish_and_settle(viewed(video, acct))
        # The fire is published after the view is recorded: wait for that attempt.
        await eventually(attempted)
    finally:
        harness.service._bus.publish = publish  # type: ignore[method-assign]
    assert calls == 1
    assert seen == []
    fires = harness.app.state.documents.collection("threshold_fires")
    doc = await fires.find_one({"_id": fire_id(video, 1)})
    assert doc is not None
    assert doc["published"] is False

    harness.service._settings = harness.service._settings.model_copy(
        update={"redrive_interval_seconds": 0.0}
    )
    await harness.service.redrive()
    await eventually(lambda: _ready(seen, 1))
    assert seen[0].id == doc["event_id"]
    assert seen[0].data == {"video_id": video, "threshold": 1, "views": 1}
    await harness.service.redrive()
    await asyncio.sleep(0.05)
    assert len(seen) == 1
