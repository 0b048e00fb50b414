"""Ready means consuming: each subscription says whether a live consumer takes its deliveries,
and `/readyz` (through `add_consumer_readiness_check`) fails while it does not — also right
after a broker restart, while the connection is back but the consumer is not yet."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import aio_pika
import httpx
import pytest
from fastapi import FastAPI

from avc_common.bus import BusError, RabbitBus
from avc_common.events import Event
from avc_common.web.health import add_consumer_readiness_check, install_health

if TYPE_CHECKING:
    from conftest import BusHarness, RabbitCtl


def _app(queue: str, subscription: object) -> FastAPI:
    app = FastAPI()
    install_health(app)
    add_consumer_readiness_check(app, queue, subscription)  # type: ignore[arg-type]
    return app


async def _readyz(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/readyz")


async def _noop(event: Event) -> None:
    return None


async def test_a_subscription_consumes_until_cancelled(harness: BusHarness) -> None:
    bus = await harness.started()
    subscription = await bus.subscribe("ready", ["ready.tick"], _noop)
    app = _app("ready", subscription)
    assert await subscription.consuming() is True
    response = await _readyz(app)
    assert response.status_code == 200
    assert response.json()["checks"] == {"consumer:ready": "ok"}

    await subscription.cancel()
    assert await subscription.consuming() is False
    response = await _readyz(app)
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["details"]["checks"] == {"consumer:ready": "failed"}


async def test_a_closed_bus_consumes_nothing(harness: BusHarness) -> None:
    bus = await harness.started()
    subscription = await bus.subscribe("closing", ["closing.tick"], _noop)
    await bus.close()
    assert await subscription.consuming() is False


async def _consumers(url: str, queue: str) -> int:
    """The broker's own count of consumers on `queue` (a fresh connection: the test's view)."""
    conn = await aio_pika.connect(url, timeout=5)
    try:
        channel = await conn.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return int(declared.declaration_result.consumer_count or 0)
    finally:
        await conn.close()


async def _connected(bus: RabbitBus) -> bool:
    try:
        await bus.ping()
    except BusError:
        return False
    return True


async def test_readyz_fails_while_a_cancelled_consumer_is_not_yet_reopened(
    rabbit_harness: BusHarness,
) -> None:
    # The broker cancels a consumer whose queue is deleted (aio-pika #334): the connection
    # stays up (a bus ping passes) but nothing is consumed until the watchdog reopens the
    # subscription (two missed checks).
    h = rabbit_harness
    bus = await h.started(watchdog_interval=1.5)
    assert isinstance(bus, RabbitBus)
    consumed: list[str] = []

    async def handler(event: Event) -> None:
        consumed.append(event.id)

    subscription = await bus.subscribe("cancelled", ["cancelled.tick"], handler)
    queue = f"{h.prefix}.cancelled"
    app = _app("cancelled", subscription)
    assert (await _readyz(app)).status_code == 200

    conn = await aio_pika.connect(h.url, timeout=5)
    try:
        channel = await conn.channel()
        await channel.queue_delete(queue)
    finally:
        await conn.close()
    deadline = time.monotonic() + 10
    while (await _readyz(app)).status_code != 503:
        assert time.monotonic() < deadline, "/readyz stayed 200 without a consumer"
        await asyncio.sleep(0.05)
    assert await _connected(bus)  # what a connection check alone reports: ready

    deadline = time.monotonic() + 30
    while (await _readyz(app)).status_code != 200:
        assert time.monotonic() < deadline, "the watchdog never reopened the subscription"
        await asyncio.sleep(0.1)
    assert await _consumers(h.url, queue) == 1
    event = h.event("cancelled.tick")
    await bus.publish(event)
    await h.until(lambda: event.id in consumed, within=15, what="the event published once ready")


@pytest.mark.broker_restart
@pytest.mark.timeout(150)
async def test_readyz_fails_from_a_broker_stop_until_the_consumer_is_back(
    rabbit_harness: BusHarness, rabbitmqctl: RabbitCtl, request: pytest.FixtureRequest
) -> None:
    h = rabbit_harness
    bus = await h.started(reconnect_interval=0.5, watchdog_interval=1.0)
    assert isinstance(bus, RabbitBus)
    consumed: list[str] = []

    async def handler(event: Event) -> None:
        consumed.append(event.id)

    subscription = await bus.subscribe("readiness", ["readiness.tick"], handler, prefetch=4)
    queue = f"{h.prefix}.readiness"
    app = _app("readiness", subscription)
    assert (await _readyz(app)).status_code == 200
    assert await _consumers(h.url, queue) == 1

    broker_down = False
    try:
        broker_down = True
        await rabbitmqctl("stop_app")
        stopped_at = time.monotonic()
        deadline = stopped_at + 30
        while (await _readyz(app)).status_code != 503:
            assert time.monotonic() < deadline, "/readyz still 200 with the broker stopped"
            await asyncio.sleep(0.1)
        not_ready_after = time.monotonic() - stopped_at
        response = await _readyz(app)
        assert response.status_code == 503
        assert response.json()["details"]["checks"] == {"consumer:readiness": "failed"}

        start_issued_at = time.monotonic()
        await rabbitmqctl("start_app")
        await rabbitmqctl("await_startup")
        broker_down = False
        up_at = time.monotonic()

        # Every /readyz answer from now on is checked against the broker's consumer count.
        connected_not_consuming = 0
        deadline = up_at + 60
        while True:
            connected = await _connected(bus)
            status = (await _readyz(app)).status_code
            if status == 200:
                consumers = await _consumers(h.url, queue)
                assert consumers == 1, f"/readyz 200 while the queue has {consumers} consumers"
                break
            assert status == 503
            connected_not_consuming += connected
            assert time.monotonic() < deadline, "the consumer never came back"
            await asyncio.sleep(0.1)
        ready_at = time.monotonic()
    finally:
        if broker_down:
            await rabbitmqctl("start_app")
            await rabbitmqctl("await_startup")

    # Ready really means consuming: an event published now is handled.
    event = h.event("readiness.tick")
    await bus.publish(event)
    await h.until(lambda: event.id in consumed, within=15, what="the event published once ready")

    figures = {
        "not_ready_after_stop_seconds": round(not_ready_after, 2),
        "ready_after_start_issued_seconds": round(ready_at - start_issued_at, 2),
        "ready_after_broker_up_seconds": round(ready_at - up_at, 2),
        # /readyz answers 503 while the connection was already back: what a bus ping alone
        # would have reported as ready.
        "connected_but_not_consuming_samples": connected_not_consuming,
    }
    print("\nreadiness across a broker restart:", figures)
    request.node.user_properties.extend(figures.items())
