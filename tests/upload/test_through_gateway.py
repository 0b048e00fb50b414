"""The seed's three steps through the gateway with an admin-created API key, exactly as curl
sends them: all-in-one (`avcaption serve`, one process) and every component as its own
process over RabbitMQ. Runs once the gateway app includes its proxy (or with the e2e launcher's
wiring, AVC_E2E_WIRE_GATEWAY=1); uses the real media service."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import (
    AMQP_URL,
    Stack,
    amqp_problem,
    running_stack,
)

CHUNK = 5 * 1024 * 1024
SEED_CONTENT_TYPE = "application/x-www-form-urlencoded"

pytestmark = [
    pytest.mark.slow,
]


@pytest.fixture
def all_in_one(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, bus_url="memory://") as stack:
        stack.start_all_in_one()
        yield stack


@pytest.fixture
def separate(tmp_path: Path) -> Iterator[Stack]:
    problem = amqp_problem(AMQP_URL)
    if problem is not None:
        pytest.skip(f"RabbitMQ does not answer ({problem})")
    with running_stack(tmp_path, bus_url=AMQP_URL) as stack:
        # Like `stack.start_services()`, but upload is also told where media is (it registers
        # each video there).
        started = [stack.spawn(name) for name in ("media", "stats", "webhooks")]
        started.append(stack.spawn("upload", env={"AVC_MEDIA_URL": started[0].url}))
        urls = {f"AVC_{c.name.upper()}_URL": c.url for c in started}
        started.append(stack.spawn("gateway", env=urls))
        for component in started:
            component.wait_ready()
        yield stack


async def _seed_steps(stack: Stack, key: str, data: bytes) -> dict[str, str]:
    """init (curl -d), chunks (curl --data-binary, 4 at a time in random order), complete."""
    headers = {"X-API-Key": key, "Content-Type": SEED_CONTENT_TYPE}
    async with httpx.AsyncClient(base_url=stack.gateway.url, timeout=120) as client:
        init = await client.post(
            "/api/v1/upload/init",
            content=json.dumps(
                {"filename": "course-lesson-1.mp4", "size": len(data), "title": "Lesson 1"}
            ),
            headers=headers,
        )
        assert init.status_code == 201, init.text
        plan = init.json()
        order = list(range(plan["total_chunks"]))
        random.Random(4).shuffle(order)
        gate = asyncio.Semaphore(4)

        async def send(index: int) -> None:
            async with gate:
                response = await client.post(
                    "/api/v1/upload/chunk",
                    content=data[index * CHUNK : (index + 1) * CHUNK],
                    headers={
                        **headers,
                        "X-Upload-ID": plan["upload_id"],
                        "X-Chunk-Index": str(index),
                    },
                )
            assert response.status_code == 200, response.text
            assert "x-ratelimit-limit" not in {h.lower() for h in response.headers}

        await asyncio.gather(*(send(i) for i in order))
        status = await client.get(f"/api/v1/upload/{plan['upload_id']}", headers={"X-API-Key": key})
        assert status.json()["missing"] == []
        done = await client.post(
            "/api/v1/upload/complete",
            content=json.dumps({"upload_id": plan["upload_id"]}),
            headers=headers,
        )
        assert done.status_code == 200, done.text
        assert "x-ratelimit-limit" in {h.lower() for h in done.headers}
        video: dict[str, str] = done.json()
        again = await client.post(
            "/api/v1/upload/complete",
            content=json.dumps({"upload_id": plan["upload_id"]}),
            headers=headers,
        )
        assert again.json() == video
        # Another account's key sees nothing of it.
        other = stack.api_key()
        hidden = await client.get(
            f"/api/v1/upload/{plan['upload_id']}", headers={"X-API-Key": other}
        )
        assert hidden.status_code == 404
        assert hidden.json()["code"] == "upload_not_found"
    return video


def _check_stored(stack: Stack, video: dict[str, str], data: bytes) -> None:
    stored = stack.data_dir / "objects" / "sources" / video["video_id"] / "original"
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    assert video["status"] == "processing"
    assert video["embed_token"]


def test_seed_steps_all_in_one_through_the_gateway(all_in_one: Stack, video_bytes: bytes) -> None:
    key = all_in_one.api_key()
    video = asyncio.run(_seed_steps(all_in_one, key, video_bytes))
    _check_stored(all_in_one, video, video_bytes)


def test_seed_steps_through_the_gateway_to_separate_processes(
    separate: Stack, video_bytes: bytes
) -> None:
    key = separate.api_key()
    video = asyncio.run(_seed_steps(separate, key, video_bytes))
    _check_stored(separate, video, video_bytes)
    separate["upload"].wait_for_record(event="upload_completed", video_id=video["video_id"])
