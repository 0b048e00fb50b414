"""A real `avcaption serve --target media-worker` process over real RabbitMQ, killed mid-encode:
the video still ends `ready` once another worker runs."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import psutil
import pytest
from pydantic import SecretStr
from tests.media.conftest import (
    INTERNAL_SECRET,
    PLAYBACK_SECRET,
    _MediaStack,
    caller_headers,
    media_settings,
)
from tests.support.videos import make_video

from avc_common.config import Settings

AMQP_URL = os.environ.get("AVC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
LEASE_SECONDS = 4

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command() -> list[str]:
    script = Path(sys.executable).with_name("avcaption")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avcaption"]


@pytest.fixture
async def rabbit() -> AsyncIterator[tuple[str, str, set[str]]]:
    """A unique exchange and queue prefix on the local broker; everything deleted afterwards."""
    try:
        conn = await aio_pika.connect(AMQP_URL, timeout=3)
        await conn.close()
    except Exception as exc:
        pytest.skip(f"RabbitMQ does not answer at {AMQP_URL.split('@')[-1]} ({exc})")
    exchange = f"test.{uuid.uuid4().hex[:12]}.events"
    prefix = f"test.{uuid.uuid4().hex[:12]}"
    queues: set[str] = set()
    yield exchange, prefix, queues
    conn = await aio_pika.connect(AMQP_URL, timeout=5)
    try:
        base = f"{prefix}.media.encode"
        names = queues | {base, f"{base}.retry", f"{base}.dead"}
        targets = [("queue", q) for q in sorted(names)]
        targets += [("exchange", exchange), ("exchange", f"{exchange}.dlx")]
        for kind, name in targets:
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


class Worker:
    """One `avcaption serve --target media-worker` OS process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.log = log
        self._sink = log.open("ab")
        self.proc = subprocess.Popen(
            [*_command(), "serve", "--target", "media-worker", "--port", str(self.port)],
            env={**env, "AVC_HOST": "127.0.0.1"},
            stdout=self._sink,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, _tail(self.log)
                with suppress(httpx.TransportError):
                    response = await client.get(f"http://127.0.0.1:{self.port}/readyz")
                    if response.status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise AssertionError(f"worker not ready:\n{_tail(self.log)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._sink.close()


async def test_a_worker_killed_mid_encode_is_replaced_and_the_video_ends_ready(
    tmp_path: Path, rabbit: tuple[str, str, set[str]]
) -> None:
    exchange, prefix, queues = rabbit
    data = tmp_path / "data"
    settings = Settings(
        data_dir=data,
        bus_url=AMQP_URL,
        bus_exchange=exchange,
        bus_queue_prefix=prefix,
        internal_secret=SecretStr(INTERNAL_SECRET),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "AVC_DATA_DIR": str(data),
        "AVC_BUS_URL": AMQP_URL,
        "AVC_BUS_EXCHANGE": exchange,
        "AVC_BUS_QUEUE_PREFIX": prefix,
        "AVC_INTERNAL_SECRET": INTERNAL_SECRET,
        "AVC_MEDIA_PLAYBACK_SECRET": PLAYBACK_SECRET,
        "AVC_MEDIA_X264_PRESET": "ultrafast",
        "AVC_MEDIA_LADDER": "720,360",
        "AVC_MEDIA_LEASE_SECONDS": str(LEASE_SECONDS),
        "AVC_MEDIA_REDRIVE_INTERVAL_SECONDS": "1",
        "AVC_MEDIA_WORK_DIR": str(tmp_path / "work"),
        "AVC_LOG_JSON": "false",
    }
    clip = make_video(tmp_path / "long.mp4", seconds=20, width=1280, height=720)
    log = tmp_path / "workers.log"
    workers: list[Worker] = []
    # No subscription in this process's bus: events are watched through a plain queue instead
    # (see `_Watch`), which keeps this process's side of the broker simple.
    stack = _MediaStack(settings, media_settings(tmp_path / "api-work"), worker=False, record=False)
    media = await stack.__aenter__()
    watch = await _Watch.open(exchange)
    try:
        async with asyncio.timeout(200):
            await _kill_and_replace(media, env, log, workers, clip)
            encoded = await watch.events("video.encoded")
            assert len(encoded) == 1, encoded
    except BaseException:
        print(f"---- worker log ----\n{_tail(log)}")
        raise
    finally:
        await watch.close()
        for worker in workers:
            worker.stop()
        bus = await media.adapters.bus()
        queues.update(getattr(bus, "declared_queues", ()))
        await stack.__aexit__(None, None, None)


class _Watch:
    """An exclusive, auto-deleted queue bound to the stack's exchange for `video.*`."""

    def __init__(self, connection: Any, queue: Any) -> None:
        self.connection = connection
        self.queue = queue

    @classmethod
    async def open(cls, exchange: str) -> _Watch:
        connection = await aio_pika.connect(AMQP_URL, timeout=5)
        channel = await connection.channel()
        events = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(events, routing_key="video.*")
        return cls(connection, queue)

    async def events(self, type_: str) -> list[str]:
        """Returns the ids of the events of this type received so far (after a short wait)."""
        await asyncio.sleep(1)
        ids = []
        while (message := await self.queue.get(no_ack=True, fail=False)) is not None:
            event = json.loads(message.body)
            if event["type"] == type_:
                ids.append(event["id"])
        return ids

    async def close(self) -> None:
        with suppress(Exception):
            await asyncio.wait_for(self.connection.close(), 10)


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


async def _kill_and_replace(
    media: Any, env: dict[str, str], log: Path, workers: list[Worker], clip: Path
) -> None:
    """Worker 1 is killed while ffmpeg runs; worker 2 finishes the video."""
    first = Worker(env, log)
    workers.append(first)
    await first.ready()
    video_id = await media.upload("acct_a", clip)
    videos = media.app.state.documents.collection("videos")

    # Kill the worker while ffmpeg runs (its lease is held, nothing is stored yet).
    deadline = time.monotonic() + 60
    while (await videos.find_one({"_id": video_id})).get("lease_owner") is None:
        assert time.monotonic() < deadline, _tail(log)
        await asyncio.sleep(0.05)
    ffmpeg: list[psutil.Process] = []
    while not ffmpeg:
        assert time.monotonic() < deadline, _tail(log)
        ffmpeg = [
            child
            for child in psutil.Process(first.proc.pid).children(recursive=True)
            if "ffmpeg" in child.name()
        ]
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    # Its ffmpeg dies with it (PR_SET_PDEATHSIG), it does not keep encoding for nobody.
    _, alive = psutil.wait_procs(ffmpeg, timeout=10)
    assert alive == []
    doc = await videos.find_one({"_id": video_id})
    assert doc["status"] == "processing"
    assert doc["encode_attempts"] == 1
    assert await media.objects.list(f"videos/{video_id}") == []

    second = Worker(env, log)
    workers.append(second)
    await second.ready()
    video = await media.wait_status("acct_a", video_id, within=180)
    assert video["status"] == "ready", (video["error"], _tail(log))
    assert [r["name"] for r in video["renditions"]] == ["720p", "360p"]
    assert video["duration_seconds"] == pytest.approx(20.0, abs=0.1)
    doc = await videos.find_one({"_id": video_id})
    assert doc["encode_attempts"] == 2

    master = await media.client.get(video["hls_url"])
    assert master.status_code == 200
    base = video["hls_url"].rsplit("/", 1)[0]
    for rung in ("720p", "360p"):
        playlist = (await media.client.get(f"{base}/{rung}/index.m3u8")).text
        segments = [line for line in playlist.splitlines() if line.endswith(".ts")]
        assert len(segments) == 4
        for segment in segments:
            response = await media.client.get(f"{base}/{rung}/{segment}")
            assert response.status_code == 200

    listed = await media.client.get("/api/v1/videos", headers=caller_headers("acct_a"))
    assert listed.json()["data"][0]["status"] == "ready"
