"""The bus contract: every adapter (in-process and RabbitMQ) must pass the same tests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from avc_common.bus import (
    BusError,
    Handler,
    InMemoryBus,
    PublishFailed,
    RabbitBus,
    open_bus,
)
from avc_common.events import Event, VideoUploaded

if TYPE_CHECKING:
    from conftest import BusHarness


async def test_round_trip_keeps_the_envelope_intact(harness: BusHarness) -> None:
    bus = await harness.started()
    got: list[Event] = []

    async def handler(event: Event) -> None:
        got.append(event)

    await bus.subscribe("roundtrip", ["video.uploaded"], handler)
    sent = Event.of(
        VideoUploaded(video_id="vid_1", filename="a.mp4", size_bytes=10, source_key="src/a"),
        account_id="acct_1",
        request_id="req_1",
    )
    await bus.publish(sent)
    await harness.until(lambda: len(got) == 1, what="the event")
    received = got[0]
    assert received == sent
    assert (received.id, received.type, received.account_id, received.request_id) == (
        sent.id,
        "video.uploaded",
        "acct_1",
        "req_1",
    )
    assert received.occurred_at == sent.occurred_at
    assert received.data == sent.data
    assert isinstance(received.payload(), VideoUploaded)


async def test_topic_patterns_star_hash_and_exact(harness: BusHarness) -> None:
    bus = await harness.started()
    seen: dict[str, list[str]] = {"star": [], "hash": [], "exact": []}
    sentinel = harness.event("video.uploaded")

    def recorder(name: str) -> Handler:
        async def handler(event: Event) -> None:
            seen[name].append(event.type if event.id != sentinel.id else "SENTINEL")

        return handler

    await bus.subscribe("star", ["video.*"], recorder("star"), prefetch=1)
    await bus.subscribe("hash", ["#"], recorder("hash"), prefetch=1)
    await bus.subscribe("exact", ["video.uploaded"], recorder("exact"), prefetch=1)
    for type_ in ("video.uploaded", "video.encoded", "view.threshold", "video.encoded.hd"):
        await bus.publish(harness.event(type_))
    await bus.publish(sentinel)  # matches all three; queues are FIFO, so it arrives last
    await harness.until(
        lambda: all(v and v[-1] == "SENTINEL" for v in seen.values()), what="the sentinel"
    )
    assert seen["star"] == ["video.uploaded", "video.encoded", "SENTINEL"]
    assert seen["hash"] == [
        "video.uploaded",
        "video.encoded",
        "view.threshold",
        "video.encoded.hd",
        "SENTINEL",
    ]
    assert seen["exact"] == ["video.uploaded", "SENTINEL"]


async def test_one_subscription_many_routing_keys(harness: BusHarness) -> None:
    bus = await harness.started()
    got: list[str] = []

    async def handler(event: Event) -> None:
        got.append(event.type)

    await bus.subscribe("multi", ["video.encoded", "video.failed"], handler, prefetch=1)
    for type_ in ("video.uploaded", "video.encoded", "video.failed"):
        await bus.publish(harness.event(type_))
    await harness.until(lambda: len(got) == 2, what="two events")
    await asyncio.sleep(0.2)
    assert got == ["video.encoded", "video.failed"]


async def test_distinct_queues_each_get_a_copy(harness: BusHarness) -> None:
    bus = await harness.started()
    a: list[str] = []
    b: list[str] = []

    async def into_a(event: Event) -> None:
        a.append(event.id)

    async def into_b(event: Event) -> None:
        b.append(event.id)

    await bus.subscribe("copy-a", ["video.uploaded"], into_a)
    await bus.subscribe("copy-b", ["video.uploaded"], into_b)
    sent = [harness.event() for _ in range(5)]
    for event in sent:
        await bus.publish(event)
    await harness.until(lambda: len(a) == 5 and len(b) == 5, what="both copies")
    assert sorted(a) == sorted(b) == sorted(e.id for e in sent)


async def test_competing_consumers_split_the_work(harness: BusHarness) -> None:
    bus = await harness.started()
    by_consumer: dict[str, list[str]] = {"one": [], "two": []}

    def worker(name: str) -> Handler:
        async def handler(event: Event) -> None:
            by_consumer[name].append(event.id)
            await asyncio.sleep(0.02)

        return handler

    await bus.subscribe("work", ["video.uploaded"], worker("one"), prefetch=1)
    await bus.subscribe("work", ["video.uploaded"], worker("two"), prefetch=1)
    sent = [harness.event() for _ in range(30)]
    await asyncio.gather(*(bus.publish(e) for e in sent))
    total = lambda: len(by_consumer["one"]) + len(by_consumer["two"])  # noqa: E731
    await harness.until(lambda: total() >= 30, what="30 deliveries")
    await asyncio.sleep(0.2)
    everything = by_consumer["one"] + by_consumer["two"]
    assert sorted(everything) == sorted(e.id for e in sent)  # each delivered exactly once
    assert by_consumer["one"]
    assert by_consumer["two"]


async def test_ack_only_after_success_failed_once_is_retried_after_a_delay(
    harness: BusHarness,
) -> None:
    bus = await harness.started()
    calls: list[float] = []
    done: list[str] = []

    async def flaky(event: Event) -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("transient")
        done.append(event.id)

    await bus.subscribe("flaky", ["video.uploaded"], flaky, retry_delay_seconds=0.3)
    event = harness.event()
    await bus.publish(event)
    await harness.until(lambda: done == [event.id], what="the retried event")
    assert len(calls) == 2
    assert calls[1] - calls[0] >= 0.25
    await asyncio.sleep(0.3)
    assert len(calls) == 2
    assert await bus.dead_letters("flaky") == []


async def test_bounded_retries_then_dead_letter_with_the_error(harness: BusHarness) -> None:
    bus = await harness.started()
    calls: Counter[str] = Counter()

    async def broken(event: Event) -> None:
        calls[event.id] += 1
        raise ValueError(f"cannot process {event.id} (attempt {calls[event.id]})")

    await bus.subscribe(
        "broken", ["video.uploaded"], broken, max_attempts=3, retry_delay_seconds=0.05
    )
    event = harness.event()
    await bus.publish(event)
    await harness.until(lambda: calls[event.id] >= 3, what="three attempts")
    records = []
    deadline = time.monotonic() + 10
    while not records and time.monotonic() < deadline:
        records = await bus.dead_letter_records("broken")
        await asyncio.sleep(0.05)
    assert len(records) == 1
    record = records[0]
    assert record.event == event
    assert record.attempts == 3
    assert record.routing_key == "video.uploaded"
    assert record.error.startswith("ValueError: cannot process")
    assert "(attempt 3)" in record.error
    await asyncio.sleep(0.3)
    assert calls[event.id] == 3
    # Peeking does not consume.
    assert await bus.dead_letters("broken") == [event]
    assert await bus.dead_letters("broken") == [event]


async def test_a_failing_message_does_not_block_the_others(harness: BusHarness) -> None:
    bus = await harness.started()
    poison = harness.event()
    ok: list[str] = []

    async def handler(event: Event) -> None:
        if event.id == poison.id:
            raise RuntimeError("poison")
        ok.append(event.id)

    await bus.subscribe("mixed", ["video.uploaded"], handler, prefetch=1, retry_delay_seconds=5)
    await bus.publish(poison)
    others = [harness.event() for _ in range(3)]
    for event in others:
        await bus.publish(event)
    await harness.until(lambda: len(ok) == 3, within=4, what="the healthy events")
    assert ok == [e.id for e in others]


async def test_invalid_body_goes_to_dead_letters_without_retries(harness: BusHarness) -> None:
    bus = await harness.started()
    handled: list[str] = []

    async def handler(event: Event) -> None:
        handled.append(event.id)

    await bus.subscribe("strict", ["video.uploaded"], handler, retry_delay_seconds=0.05)
    await harness.inject_raw(bus, "video.uploaded", b"this is not json")
    await harness.inject_raw(bus, "video.uploaded", b'{"type": "video.uploaded"}')
    good = harness.event()
    await bus.publish(good)
    await harness.until(lambda: handled == [good.id], what="the valid event")
    records = []
    deadline = time.monotonic() + 10
    while len(records) < 2 and time.monotonic() < deadline:
        records = await bus.dead_letter_records("strict")
        await asyncio.sleep(0.05)
    assert sorted(r.body for r in records) == sorted(
        [b"this is not json", b'{"type": "video.uploaded"}']
    )
    assert all(r.event is None and r.attempts == 0 for r in records)
    assert all(r.error.startswith("invalid event body") for r in records)
    assert await bus.dead_letters("strict") == []  # only parseable events are listed
    await asyncio.sleep(0.2)
    assert handled == [good.id]


async def test_prefetch_bounds_concurrency(harness: BusHarness) -> None:
    bus = await harness.started()
    in_flight = 0
    peak = 0
    done: list[str] = []

    async def slow(event: Event) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.1)
        in_flight -= 1
        done.append(event.id)

    await bus.subscribe("bounded", ["video.uploaded"], slow, prefetch=3)
    await asyncio.gather(*(bus.publish(harness.event()) for _ in range(12)))
    await harness.until(lambda: len(done) == 12, what="12 events")
    assert peak == 3


async def test_cancel_stops_delivery_and_keeps_the_queue(harness: BusHarness) -> None:
    bus = await harness.started()
    first: list[str] = []
    later: list[str] = []

    async def into_first(event: Event) -> None:
        first.append(event.id)

    async def into_later(event: Event) -> None:
        later.append(event.id)

    sub = await bus.subscribe("cancel", ["video.uploaded"], into_first)
    a, b = harness.event(), harness.event()
    await bus.publish(a)
    await harness.until(lambda: first == [a.id], what="the first event")
    await sub.cancel()
    await bus.publish(b)
    await asyncio.sleep(0.5)
    assert first == [a.id]
    await bus.subscribe("cancel", ["video.uploaded"], into_later)
    await harness.until(lambda: later == [b.id], what="the event kept while nobody listened")


async def test_messages_published_while_nobody_consumes_are_kept(harness: BusHarness) -> None:
    bus = await harness.started()

    async def ignore(event: Event) -> None:
        return None

    sub = await bus.subscribe("kept", ["video.*"], ignore)
    await sub.cancel()  # the queue exists and is bound, nobody consumes
    sent = [harness.event("video.encoded") for _ in range(3)]
    for event in sent:
        await bus.publish(event)
    if harness.durable:
        # A different process (another bus, another connection) finds them.
        await bus.close()
        bus = await harness.started()
    got: list[str] = []

    async def collect(event: Event) -> None:
        got.append(event.id)

    await bus.subscribe("kept", ["video.*"], collect, prefetch=1)
    await harness.until(lambda: len(got) == 3, what="the kept events")
    assert got == [e.id for e in sent]


async def test_close_waits_for_the_in_flight_handler(harness: BusHarness) -> None:
    bus = await harness.started()
    started = asyncio.Event()
    finished: list[str] = []

    async def slow(event: Event) -> None:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(event.id)

    await bus.subscribe("graceful", ["video.uploaded"], slow)
    event = harness.event()
    await bus.publish(event)
    await asyncio.wait_for(started.wait(), 10)
    await bus.close()
    assert finished == [event.id]
    if harness.durable:
        # It was acked before the connection closed: nobody gets it again.
        again: list[str] = []

        async def collect(e: Event) -> None:
            again.append(e.id)

        other = await harness.started()
        await other.subscribe("graceful", ["video.uploaded"], collect)
        await asyncio.sleep(1.0)
        assert again == []


async def test_publish_after_close_raises_publish_failed(harness: BusHarness) -> None:
    bus = await harness.started()
    await bus.close()
    with pytest.raises(PublishFailed):
        await bus.publish(harness.event())


async def test_ping_ok_while_open_and_raises_after_close(harness: BusHarness) -> None:
    bus = await harness.started()
    await bus.ping()
    await bus.close()
    with pytest.raises(BusError):
        await bus.ping()


async def test_not_started_bus_refuses_work(harness: BusHarness) -> None:
    bus = harness.make()
    with pytest.raises(PublishFailed):
        await bus.publish(harness.event())
    with pytest.raises(BusError):
        await bus.ping()

    async def handler(event: Event) -> None:
        return None

    with pytest.raises(BusError):
        await bus.subscribe("early", ["#"], handler)


async def test_publish_without_subscribers_succeeds(harness: BusHarness) -> None:
    bus = await harness.started()
    await bus.publish(harness.event("nobody.listens"))


async def test_subscribe_rejects_bad_arguments(harness: BusHarness) -> None:
    bus = await harness.started()

    async def handler(event: Event) -> None:
        return None

    with pytest.raises(ValueError):
        await bus.subscribe("bad", "video.*", handler)
    with pytest.raises(ValueError):
        await bus.subscribe("bad", ["video.*"], handler, prefetch=0)
    with pytest.raises(ValueError):
        await bus.subscribe("bad", ["video.*"], handler, max_attempts=0)


async def test_200_concurrent_publishes_are_consumed_exactly_once(harness: BusHarness) -> None:
    bus = await harness.started()
    seen: Counter[str] = Counter()

    async def handler(event: Event) -> None:
        seen[event.id] += 1

    await bus.subscribe("bulk", ["video.*"], handler, prefetch=32)
    sent = [harness.event("video.viewed", n=n) for n in range(200)]
    await asyncio.gather(*(bus.publish(e) for e in sent))
    await harness.until(lambda: len(seen) == 200, within=30, what="200 events")
    await asyncio.sleep(0.3)
    assert set(seen) == {e.id for e in sent}
    assert set(seen.values()) == {1}


@pytest.mark.parametrize("url", ["redis://localhost", "kafka://x", "memory", "", "http://a"])
def test_open_bus_rejects_unknown_schemes(url: str) -> None:
    with pytest.raises(ValueError, match=r"memory://.*amqp://.*amqps://"):
        open_bus(url)


def test_open_bus_picks_the_adapter_from_the_scheme() -> None:
    memory = open_bus("memory://", exchange="x.events", queue_prefix="p")
    assert isinstance(memory, InMemoryBus)
    assert (memory.exchange, memory.queue_prefix) == ("x.events", "p")
    for url in ("amqp://guest:guest@localhost:5672/", "AMQPS://u:p@broker/vhost"):
        rabbit = open_bus(url, exchange="x.events", queue_prefix="p")
        assert isinstance(rabbit, RabbitBus)
        assert (rabbit.exchange, rabbit.queue_prefix) == ("x.events", "p")
