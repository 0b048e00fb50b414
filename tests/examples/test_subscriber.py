"""examples/subscriber against the real platform: every component its own process over the real
RabbitMQ (tests/e2e/harness.py, a per-run exchange), real uploads encoded by the media worker.

The subscriber binds a queue of its own with `video.*` and must see `video.uploaded` and
`video.encoded` of each video exactly once, drop copies of them, refuse bodies that break the
contract, and keep doing so across a broker restart and a restart of its own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import jsonschema
import pytest
import yaml
from examples.subscriber.event_subscriber import (
    DEFAULT_CONTRACT,
    EnvelopeChecker,
    ReceivedEvent,
    SeenIds,
    Subscriber,
)
from referencing import Registry
from referencing.jsonschema import DRAFT7
from tests.e2e.harness import AMQP_URL, Stack, amqp_problem, running_stack
from tests.support.videos import make_video

pytestmark = [pytest.mark.slow]

ENV = {"AVC_MEDIA_X264_PRESET": "ultrafast", "AVC_MEDIA_LADDER": "360"}
WAIT = 120.0


@pytest.fixture(scope="module")
def amqp_url() -> str:
    problem = amqp_problem(AMQP_URL)
    if problem is not None:
        pytest.skip(f"RabbitMQ does not answer at {AMQP_URL.split('@')[-1]} ({problem})")
    return AMQP_URL


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(
        tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=2, width=640, height=360
    )


@pytest.fixture
def platform(amqp_url: str, tmp_path: Path) -> Iterator[Stack]:
    """upload, media, media-worker, stats, webhooks, webhooks-worker and the gateway."""
    with running_stack(tmp_path / "stack", bus_url=amqp_url, extra_env=ENV) as stack:
        media = stack.spawn("media")
        media.wait_ready()
        urls = {"AVC_MEDIA_URL": media.url}
        started = [stack.spawn(n, env=urls) for n in ("upload", "stats", "webhooks")]
        started += [stack.spawn("media-worker"), stack.spawn("webhooks-worker")]
        for component in started:
            component.wait_ready()
        urls |= {
            f"AVC_{c.name.upper()}_URL": c.url for c in started if not c.name.endswith("worker")
        }
        stack.spawn("gateway", env=urls).wait_ready()
        yield stack


class Recorder:
    """The subscriber's work: remembers every event it was handed."""

    def __init__(self) -> None:
        self.events: list[ReceivedEvent] = []

    async def __call__(self, event: ReceivedEvent) -> None:
        self.events.append(event)

    def per_video(self) -> Counter[tuple[str, str]]:
        return Counter((e.type, e.data["video_id"]) for e in self.events)


def subscriber(stack: Stack, recorder: Recorder, seen: SeenIds) -> Subscriber:
    return Subscriber(
        url=stack.bus_url,
        exchange=stack.exchange,
        # Under the stack's prefix only so that the harness deletes it at the end.
        queue=f"{stack.queue_prefix}.example-subscriber",
        bindings=["video.*"],
        handler=recorder,
        checker=EnvelopeChecker.from_file(),
        seen=seen,
    )


async def until(predicate: Callable[[], bool], what: str, within: float = WAIT) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.1)


async def upload(gateway: str, key: str, clip: Path) -> str:
    """Uploads `clip` and returns the video id (retried while the platform answers 503, as it
    does for a moment after a broker restart)."""

    def post() -> httpx.Response:
        return httpx.post(
            f"{gateway}/api/v1/upload",
            headers={"X-API-Key": key},
            files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")},
            timeout=60,
        )

    deadline = time.monotonic() + WAIT
    while True:
        response = await asyncio.to_thread(post)
        if response.status_code != 503 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert response.status_code == 201, response.text
    video_id: str = response.json()["video_id"]
    return video_id


async def video(gateway: str, key: str, video_id: str) -> dict[str, Any]:
    response = await asyncio.to_thread(
        httpx.get, f"{gateway}/api/v1/videos/{video_id}", headers={"X-API-Key": key}, timeout=10
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def publish_raw(stack: Stack, routing_key: str, body: bytes) -> None:
    """Publishes on the platform's exchange as a producer would (a redelivery, a re-drive, or a
    broken producer)."""
    connection = await aio_pika.connect(stack.bus_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(stack.exchange)
        await exchange.publish(
            aio_pika.Message(body, content_type="application/json"), routing_key=routing_key
        )
    finally:
        await connection.close()


def webhook_body_validator() -> jsonschema.Draft7Validator:
    """Returns a validator of the committed contract's `WebhookBody` schema."""
    document = yaml.safe_load(DEFAULT_CONTRACT.read_text(encoding="utf-8"))
    uri = "urn:avcaption:asyncapi"
    registry: Registry[Any] = Registry().with_resource(uri, DRAFT7.create_resource(document))
    return jsonschema.Draft7Validator(
        {"$ref": f"{uri}#/components/schemas/WebhookBody"}, registry=registry
    )


def body_of(event: ReceivedEvent) -> bytes:
    return json.dumps(dataclasses.asdict(event)).encode()


class WebhookReceiver:
    """A local HTTPS-less webhook endpoint (the harness allows insecure URLs) keeping bodies."""

    def __init__(self) -> None:
        bodies: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.bodies = bodies
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_the_subscriber_sees_each_platform_event_once(
    platform: Stack, clip: Path, tmp_path: Path
) -> None:
    key = await asyncio.to_thread(platform.api_key)
    gateway = platform.gateway.url
    receiver = WebhookReceiver()
    created = await asyncio.to_thread(
        httpx.post,
        f"{gateway}/api/v1/webhooks",
        headers={"X-API-Key": key},
        json={"url": receiver.url, "events": ["video.uploaded", "video.encoded"]},
        timeout=30,
    )
    assert created.status_code == 201, created.text

    recorder = Recorder()
    seen = SeenIds(tmp_path / "seen.sqlite3")
    sub = subscriber(platform, recorder, seen)
    await sub.start()
    try:
        video_id = await upload(gateway, key, clip)
        await until(lambda: ("video.encoded", video_id) in recorder.per_video(), "video.encoded")
        assert recorder.per_video() == {
            ("video.uploaded", video_id): 1,
            ("video.encoded", video_id): 1,
        }
        uploaded, encoded = recorder.events
        assert (uploaded.type, encoded.type) == ("video.uploaded", "video.encoded")
        ready = await video(gateway, key, video_id)
        assert ready["status"] == "ready"
        assert [(r["name"], r["width"], r["height"]) for r in encoded.data["renditions"]] == [
            (r["name"], r["width"], r["height"]) for r in ready["renditions"]
        ]

        # Copies of both (what a redelivery or media's re-drive looks like) are dropped.
        for event in (uploaded, encoded):
            await publish_raw(platform, event.type, body_of(event))
        await until(lambda: sub.tally.duplicates_dropped == 2, "2 duplicates dropped")

        # A body that breaks the contract is refused; a type it does not know is ignored.
        broken = {**dataclasses.asdict(encoded), "id": "evt_broken", "data": {"video_id": 1}}
        await publish_raw(platform, "video.encoded", json.dumps(broken).encode())
        future = {**dataclasses.asdict(encoded), "id": "evt_future", "type": "video.archived"}
        await publish_raw(platform, "video.archived", json.dumps(future).encode())
        await until(
            lambda: (sub.tally.invalid_rejected, sub.tally.unknown_ignored) == (1, 1),
            "the broken body refused and the unknown type ignored",
        )
        assert recorder.per_video() == {
            ("video.uploaded", video_id): 1,
            ("video.encoded", video_id): 1,
        }

        # The webhook bodies of the same events: same id, same data, same payload schemas.
        await until(lambda: len(receiver.bodies) >= 2, "two webhook deliveries")
        check = webhook_body_validator()
        by_id = {e.id: e for e in recorder.events}
        for body in receiver.bodies:
            assert list(check.iter_errors(body)) == []
            event = by_id[body["id"]]
            assert (body["type"], body["data"]) == (event.type, event.data)
            assert body["created_at"] == event.occurred_at
        print(
            "\nsubscriber figures:",
            {
                "handled": dict(sub.tally.handled),
                "duplicates_dropped": sub.tally.duplicates_dropped,
                "invalid_rejected": sub.tally.invalid_rejected,
                "unknown_ignored": sub.tally.unknown_ignored,
                "webhook_bodies_matching_bus_events": len(receiver.bodies),
            },
        )
    finally:
        await sub.close()
        seen.close()
        receiver.close()


def rabbitmqctl(*args: str) -> None:
    path = shutil.which("rabbitmqctl")
    if path is None:
        pytest.skip("rabbitmqctl is not installed on this machine")
    subprocess.run([path, *args], check=True, capture_output=True, timeout=120)


@pytest.mark.broker_restart
@pytest.mark.timeout(600)
async def test_once_each_across_a_broker_restart_and_a_subscriber_restart(
    platform: Stack, clip: Path, tmp_path: Path
) -> None:
    key = await asyncio.to_thread(platform.api_key)
    gateway = platform.gateway.url
    recorder = Recorder()
    seen_path = tmp_path / "seen.sqlite3"
    seen = SeenIds(seen_path)
    first = subscriber(platform, recorder, seen)
    await first.start()
    second: Subscriber | None = None
    broker_down = False
    try:
        a = await upload(gateway, key, clip)
        await until(lambda: ("video.encoded", a) in recorder.per_video(), "A encoded")

        # The broker restarts under the running subscriber (and the whole platform).
        broker_down = True
        await asyncio.to_thread(rabbitmqctl, "stop_app")
        await asyncio.sleep(2)
        await asyncio.to_thread(rabbitmqctl, "start_app")
        await asyncio.to_thread(rabbitmqctl, "await_startup")
        broker_down = False

        b = await upload(gateway, key, clip)
        await until(lambda: ("video.encoded", b) in recorder.per_video(), "B encoded after restart")

        # The subscriber stops; C's events wait in its durable queue until it is back.
        await first.close()
        seen.close()
        c = await upload(gateway, key, clip)

        async def c_done() -> bool:
            return (await video(gateway, key, c))["status"] != "processing"

        deadline = time.monotonic() + WAIT
        while not await c_done():
            assert time.monotonic() < deadline, "C still processing"
            await asyncio.sleep(0.25)
        seen = SeenIds(seen_path)
        second = subscriber(platform, recorder, seen)
        await second.start()
        await until(lambda: ("video.encoded", c) in recorder.per_video(), "C after the restart")

        # The restarted subscriber remembers A's ids: copies of A are dropped.
        a_events = [e for e in recorder.events if e.data["video_id"] == a]
        for event in a_events:
            await publish_raw(platform, event.type, body_of(event))
        await until(lambda: second.tally.duplicates_dropped >= 2, "A's copies dropped")

        expected = {(t, v): 1 for v in (a, b, c) for t in ("video.uploaded", "video.encoded")}
        assert recorder.per_video() == expected
        print(
            "\nsubscriber across restarts:",
            {
                "first_run_handled": dict(first.tally.handled),
                "first_run_duplicates_dropped": first.tally.duplicates_dropped,
                "second_run_handled": dict(second.tally.handled),
                "second_run_duplicates_dropped": second.tally.duplicates_dropped,
                "per_video_counts": sorted(Counter(recorder.per_video().values()).items()),
            },
        )
    finally:
        if broker_down:
            await asyncio.to_thread(rabbitmqctl, "start_app")
            await asyncio.to_thread(rabbitmqctl, "await_startup")
        await first.close()
        if second is not None:
            await second.close()
        seen.close()
