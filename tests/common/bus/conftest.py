"""Fixtures for the bus contract suite: one harness per adapter, unique names per test."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import pytest

from avc_common.bus import Bus, InMemoryBus, RabbitBus
from avc_common.events import Event

AMQP_URL = os.environ.get("AVC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def _probe(url: str) -> str | None:
    """Returns why the broker does not answer, or None when it does (runs its own loop)."""
    result: list[str | None] = ["probe did not finish"]

    async def check() -> None:
        conn = await aio_pika.connect(url, timeout=3)
        await conn.close()

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(check(), 5))
            result[0] = None
        except Exception as exc:
            result[0] = f"{type(exc).__name__}: {exc}"

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10)
    return result[0]


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    error = _probe(AMQP_URL)
    if error is not None:
        pytest.skip(f"RabbitMQ does not answer at {AMQP_URL.split('@')[-1]} ({error})")
    return AMQP_URL


@dataclass
class BusHarness:
    """Builds buses of one adapter on a unique exchange and queue prefix, and cleans up."""

    kind: str
    url: str
    exchange: str = field(default_factory=lambda: f"test.{uuid.uuid4().hex[:12]}.events")
    prefix: str = field(default_factory=lambda: f"test.{uuid.uuid4().hex[:12]}")
    buses: list[Bus] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        """Whether queues outlive a bus object (a second bus sees the first one's queues)."""
        return self.kind == "rabbitmq"

    def make(self, **options: Any) -> Bus:
        bus: Bus
        if self.kind == "memory":
            bus = InMemoryBus(exchange=self.exchange, queue_prefix=self.prefix, **options)
        else:
            bus = RabbitBus(self.url, exchange=self.exchange, queue_prefix=self.prefix, **options)
        self.buses.append(bus)
        return bus

    async def started(self, **options: Any) -> Bus:
        bus = self.make(**options)
        await bus.start()
        return bus

    async def inject_raw(self, bus: Bus, routing_key: str, body: bytes) -> None:
        """Publishes a body that is not necessarily an Event (what a buggy producer might send)."""
        if isinstance(bus, InMemoryBus):
            bus._publish_raw(routing_key, body)
            return
        conn = await aio_pika.connect(self.url)
        try:
            channel = await conn.channel(publisher_confirms=True)
            exchange = await channel.get_exchange(self.exchange)
            await exchange.publish(
                aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                routing_key,
            )
        finally:
            await conn.close()

    @staticmethod
    def event(type_: str = "video.uploaded", **data: Any) -> Event:
        return Event(
            type=type_,
            account_id="acct_test",
            request_id=f"req_{uuid.uuid4().hex[:8]}",
            data=data or {"video_id": "vid_test"},
        )

    @staticmethod
    async def until(predicate: Callable[[], bool], within: float = 15.0, what: str = "") -> None:
        """Waits until `predicate()` holds; fails the test after `within` seconds."""
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {within}s waiting for {what or predicate}")
            await asyncio.sleep(0.02)

    async def cleanup(self) -> None:
        for bus in self.buses:
            with suppress(Exception):
                await bus.close()
        if self.kind != "rabbitmq":
            return
        queues: set[str] = set()
        for bus in self.buses:
            if isinstance(bus, RabbitBus):
                queues |= bus.declared_queues
        conn = await aio_pika.connect(self.url, timeout=5)
        try:
            for kind, name in [("queue", q) for q in sorted(queues)] + [
                ("exchange", self.exchange),
                ("exchange", f"{self.exchange}.dlx"),
            ]:
                # A channel per delete: one failure must not leave the rest behind.
                channel = await conn.channel()
                try:
                    if kind == "queue":
                        await channel.queue_delete(name)
                    else:
                        await channel.exchange_delete(name)
                except Exception as exc:
                    warnings.warn(f"could not delete {kind} {name}: {exc!r}", stacklevel=1)
                finally:
                    with suppress(Exception):
                        await channel.close()
        finally:
            await conn.close()


@pytest.fixture(params=["memory", "rabbitmq"])
def bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    url: str = request.getfixturevalue("rabbitmq_url")
    return url


@pytest.fixture
async def harness(bus_url: str) -> AsyncIterator[BusHarness]:
    h = BusHarness(kind="memory" if bus_url == "memory://" else "rabbitmq", url=bus_url)
    try:
        yield h
    finally:
        await h.cleanup()


@pytest.fixture
async def rabbit_harness(rabbitmq_url: str) -> AsyncIterator[BusHarness]:
    h = BusHarness(kind="rabbitmq", url=rabbitmq_url)
    try:
        yield h
    finally:
        await h.cleanup()


@dataclass(frozen=True)
class RabbitCtl:
    """Runs `rabbitmqctl` against the local node (needs to run as a user allowed to)."""

    path: str

    async def __call__(self, *args: str, limit: float = 90.0) -> str:
        proc = await asyncio.create_subprocess_exec(
            self.path,
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        text = out.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}): {text}")
        return text

    async def close_connections_named(self, name: str) -> int:
        """Force-closes the connections whose `connection_name` is `name`; returns how many."""
        listing = await self("list_connections", "--no-table-headers", "pid", "client_properties")
        pids = [
            line.split("\t", 1)[0]
            for line in listing.splitlines()
            if f'{{"connection_name","{name}"}}' in line
        ]
        for pid in pids:
            await self("close_connection", pid, "test: simulated network failure")
        return len(pids)


@pytest.fixture(scope="session")
def rabbitmqctl(rabbitmq_url: str) -> RabbitCtl:
    path = shutil.which("rabbitmqctl")
    if path is None:
        pytest.skip("rabbitmqctl is not installed on this machine")
    try:
        probe = subprocess.run(
            [path, "status"], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"rabbitmqctl does not work here: {exc}")
    if probe.returncode != 0:
        pytest.skip(f"rabbitmqctl status failed (not root?): {probe.stdout[-300:]}")
    return RabbitCtl(path)
