"""A real broker restart under load: no confirmed event may be lost, consumption must resume.

Stops the shared RabbitMQ app, so it is marked `broker_restart` and must not run in parallel
with other tests that use the broker.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from itertools import pairwise
from typing import TYPE_CHECKING

import pytest

from avc_common.bus import PublishFailed
from avc_common.events import Event

if TYPE_CHECKING:
    from conftest import BusHarness, RabbitCtl

OUTAGE_SECONDS = 4.0


@pytest.mark.broker_restart
@pytest.mark.timeout(110)
async def test_broker_restart_loses_no_confirmed_event(
    rabbit_harness: BusHarness,
    rabbitmqctl: RabbitCtl,
    request: pytest.FixtureRequest,
) -> None:
    h = rabbit_harness
    consumer_bus = await h.started(reconnect_interval=0.5, watchdog_interval=1.0)
    publisher_bus = await h.started(reconnect_interval=0.5, publish_timeout=3.0)

    consumed: Counter[str] = Counter()
    first_consumed_at: dict[str, float] = {}

    async def handler(event: Event) -> None:
        consumed[event.id] += 1
        first_consumed_at.setdefault(event.id, time.monotonic())
        await asyncio.sleep(0.02)  # keeps deliveries in flight when the broker stops

    await consumer_bus.subscribe("restart", ["restart.tick"], handler, prefetch=16)

    confirmed_at: dict[str, float] = {}
    attempted: list[str] = []
    publish_calls = 0
    failed_publishes = 0
    stop_publishing = asyncio.Event()

    async def publisher() -> None:
        nonlocal publish_calls, failed_publishes
        n = 0
        while not stop_publishing.is_set():
            event = Event(type="restart.tick", account_id="acct_test", data={"n": n})
            attempted.append(event.id)
            n += 1
            # Same event (same id) again until confirmed: consumers dedupe on the id.
            while not stop_publishing.is_set():
                publish_calls += 1
                try:
                    await publisher_bus.publish(event)
                except PublishFailed:
                    failed_publishes += 1
                    await asyncio.sleep(0.2)
                    continue
                confirmed_at[event.id] = time.monotonic()
                break
            await asyncio.sleep(0.01)

    publishing = asyncio.create_task(publisher())
    await h.until(lambda: len(consumed) >= 20, within=20, what="steady consumption")
    await asyncio.sleep(1.0)

    broker_down = False
    down_at = start_issued_at = up_at = 0.0
    try:
        down_at = time.monotonic()
        broker_down = True
        await rabbitmqctl("stop_app")
        await asyncio.sleep(OUTAGE_SECONDS)
        start_issued_at = time.monotonic()
        await rabbitmqctl("start_app")
        await rabbitmqctl("await_startup")
        broker_down = False
        up_at = time.monotonic()

        def resumed() -> bool:
            fresh = [i for i, t in confirmed_at.items() if t > up_at]
            return len(fresh) >= 100 and all(i in consumed for i in fresh[:100])

        await h.until(resumed, within=45, what="consumption of events published after restart")
    finally:
        stop_publishing.set()
        await asyncio.wait_for(publishing, 10)
        if broker_down:
            await rabbitmqctl("start_app")
            await rabbitmqctl("await_startup")

    confirmed = set(confirmed_at)
    await h.until(lambda: confirmed <= set(consumed), within=30, what="every confirmed event")

    timeline = sorted(first_consumed_at.values())
    resumed_at = next(t for t in timeline if t > start_issued_at)
    figures = {
        "events_attempted": len(attempted),
        "publish_calls": publish_calls,
        "confirmed": len(confirmed),
        "failed_publishes": failed_publishes,
        "consumed_unique": len(consumed),
        "duplicates": sum(count - 1 for count in consumed.values()),
        "confirmed_after_restart": sum(1 for t in confirmed_at.values() if t > up_at),
        # stop_app issued -> await_startup returned (rabbitmqctl itself takes ~1 s per call)
        "outage_seconds": round(up_at - down_at, 2),
        # start_app issued -> first event consumed again (includes the broker's boot)
        "time_to_resume_seconds": round(resumed_at - start_issued_at, 2),
        "longest_consumption_gap_seconds": round(max(b - a for a, b in pairwise(timeline)), 2),
    }
    print("\nbroker restart figures:", figures)
    # The report's user properties (what `record_property` fills; junit XML shows them too).
    request.node.user_properties.extend(figures.items())

    assert confirmed <= set(consumed), "a confirmed event was lost"
    assert figures["confirmed_after_restart"] >= 100
    assert set(consumed) <= set(attempted)
