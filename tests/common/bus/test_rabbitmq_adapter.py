"""RabbitMQ-only behaviour: topology, broker-side dead-lettering, recovery from lost consumers
and dropped connections (the cases aio-pika's robust connection is known to get wrong)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING

import aio_pika
import pytest

from avc_common.bus import BusError, RabbitBus
from avc_common.events import Event

if TYPE_CHECKING:
    from conftest import BusHarness, RabbitCtl


async def test_queues_are_quorum_with_dead_lettering(
    rabbit_harness: BusHarness, rabbitmqctl: RabbitCtl
) -> None:
    bus = await rabbit_harness.started()

    async def handler(event: Event) -> None:
        return None

    await bus.subscribe("topology", ["video.*"], handler)
    listing = await rabbitmqctl("list_queues", "--no-table-headers", "name", "type", "arguments")
    rows = {
        line.split("\t")[0]: line
        for line in listing.splitlines()
        if line.startswith(f"{rabbit_harness.prefix}.topology")
    }
    main = f"{rabbit_harness.prefix}.topology"
    assert set(rows) == {main, f"{main}.retry", f"{main}.dead"}
    assert all("\tquorum\t" in row for row in rows.values())
    assert f"{rabbit_harness.exchange}.dlx" in rows[main]
    assert "at-least-once" in rows[main]
    assert "x-delivery-limit" in rows[main]
    assert f'"x-dead-letter-routing-key","{main}"' in rows[f"{main}.retry"]


async def test_broker_side_rejects_land_in_the_dead_letter_queue(
    rabbit_harness: BusHarness,
) -> None:
    bus = await rabbit_harness.started()

    async def never(event: Event) -> None:
        raise AssertionError("not consumed through the bus in this test")

    sub = await bus.subscribe("rejected", ["video.uploaded"], never)
    await sub.cancel()
    event = rabbit_harness.event()
    await bus.publish(event)
    # Another client rejects it without requeue: the queue's own DLX must park it.
    conn = await aio_pika.connect(rabbit_harness.url)
    try:
        channel = await conn.channel()
        queue = await channel.get_queue(f"{rabbit_harness.prefix}.rejected", ensure=False)
        message = await queue.get(timeout=5)
        await message.reject(requeue=False)
    finally:
        await conn.close()
    records = []
    deadline = time.monotonic() + 10
    while not records and time.monotonic() < deadline:
        records = await bus.dead_letter_records("rejected")
        await asyncio.sleep(0.05)
    assert [r.event for r in records] == [event]
    assert records[0].error == "dead-lettered by the broker: rejected"


async def test_start_fails_fast_when_the_broker_is_unreachable() -> None:
    bus = RabbitBus("amqp://guest:secret@127.0.0.1:1/", connect_timeout=3)
    started = time.monotonic()
    with pytest.raises(BusError) as caught:
        await bus.start()
    assert time.monotonic() - started < 10
    assert "secret" not in str(caught.value)


async def test_watchdog_restores_a_consumer_lost_behind_aio_pikas_back(
    rabbit_harness: BusHarness,
) -> None:
    bus = await rabbit_harness.started(watchdog_interval=0.2)
    got: list[str] = []

    async def handler(event: Event) -> None:
        got.append(event.id)

    sub = await bus.subscribe("watched", ["video.uploaded"], handler)
    # Cancel on the wire only: aio-pika still believes it consumes and will never restore it
    # (the failure mode of mosquito/aio-pika#231 and #626).
    underlay = await sub._channel.get_underlay_channel()  # type: ignore[attr-defined]
    await underlay.basic_cancel(sub._tag)  # type: ignore[attr-defined]
    event = rabbit_harness.event()
    await bus.publish(event)
    await rabbit_harness.until(lambda: got == [event.id], within=10, what="restored consumer")


async def test_dropped_connection_keeps_handlers_running_and_redelivers(
    rabbit_harness: BusHarness, rabbitmqctl: RabbitCtl
) -> None:
    bus = await rabbit_harness.started(watchdog_interval=0.5)
    calls: Counter[str] = Counter()
    finished: list[str] = []
    first_started = asyncio.Event()
    connection_dropped = asyncio.Event()

    async def handler(event: Event) -> None:
        calls[event.id] += 1
        first_started.set()
        if calls[event.id] == 1:
            await connection_dropped.wait()  # still running when the connection dies
            await asyncio.sleep(0.2)
        finished.append(event.id)

    await bus.subscribe("dropped", ["video.uploaded"], handler)
    event = rabbit_harness.event()
    await bus.publish(event)
    await asyncio.wait_for(first_started.wait(), 10)
    closed = await rabbitmqctl.close_connections_named(f"avcaption:{rabbit_harness.prefix}")
    assert closed == 1
    connection_dropped.set()
    # Publishing right after the drop waits for the reconnect instead of failing or hanging.
    after = rabbit_harness.event()
    await bus.publish(after)
    await rabbit_harness.until(
        lambda: finished.count(event.id) == 2 and after.id in finished,
        within=20,
        what="the redelivery and the event published after the drop",
    )
    # The first run was not cancelled by the channel closing; its ack was lost, so the broker
    # redelivered (at least once).
    assert calls[event.id] == 2
    await bus.ping()


def test_bus_options_ride_on_the_url_and_are_kept_from_aio_pika() -> None:
    bus = RabbitBus("amqp://u:p@h:5672/vh?publish_timeout=7&heartbeat=30&close_timeout=2")
    assert (bus.publish_timeout, bus.close_timeout) == (7.0, 2.0)
    assert bus.url == "amqp://u:p@h:5672/vh?heartbeat=30"
    assert RabbitBus("amqp://h/?publish_timeout=7", publish_timeout=1).publish_timeout == 1
    assert RabbitBus("amqp://h/").publish_timeout == 30.0
    with pytest.raises(ValueError, match="seconds"):
        RabbitBus("amqp://h/?publish_timeout=soon")
