"""RabbitMQ is restarted in the middle of 20 chunked uploads: all 20 videos become ready and
each webhook event is delivered exactly once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.s3 import S3Server
from tests.support.videos import make_video

from .system import System, WebhookReceiver, broker_stopped, running_system

pytestmark = [pytest.mark.slow, pytest.mark.broker_restart, pytest.mark.timeout(600)]

UPLOADS = 20
BROKER_DOWN_SECONDS = 3.0


def with_retries(call: Any, *, what: str, within: float = 120) -> httpx.Response:
    """Calls until a 2xx answer, like a client retrying 5xx and dropped connections."""
    deadline = time.monotonic() + within
    while True:
        try:
            response: httpx.Response = call()
            if response.status_code < 500:
                assert response.status_code < 300, (what, response.status_code, response.text)
                return response
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what}: no success within {within} s"
        time.sleep(0.5)


def test_broker_restart_during_20_chunked_uploads(tmp_path: Path, moto_server: S3Server) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=2, video_bitrate="24M")  # 2 chunks
    env = {
        "AVC_MEDIA_REDRIVE_INTERVAL_SECONDS": "5",
        "AVC_MEDIA_REDRIVE_AFTER_SECONDS": "30",
        "AVC_UPLOAD_SWEEP_INTERVAL_SECONDS": "5",
        "AVC_UPLOAD_REDRIVE_AFTER_SECONDS": "30",
        "AVC_STATS_REDRIVE_INTERVAL_SECONDS": "5",
    }
    receiver = WebhookReceiver().start()
    try:
        with running_system(tmp_path / "sys", moto_server, env=env) as system:
            created = system.request("POST", "/api/v1/webhooks", json={"url": receiver.url})
            assert created.status_code == 201, created.text
            webhook_id = created.json()["id"]
            figures = run_uploads_across_a_restart(system, clip)
            video_ids = figures.pop("video_ids")
            videos = system.wait_videos(video_ids, within=300)
            ready_after = time.monotonic() - figures.pop("restart_started")
            statuses = {v["status"] for v in videos.values()}
            assert statuses == {"ready"}, {i: v["status"] for i, v in videos.items()}

            expected = 2 * UPLOADS  # video.uploaded + video.encoded per video
            deadline = time.monotonic() + 120
            while len(receiver.delivered()) < expected:
                assert time.monotonic() < deadline, f"{len(receiver.delivered())}/{expected}"
                time.sleep(0.5)
            time.sleep(3)  # room for a duplicate to arrive, were there one
            deliveries = system.request(
                "GET", f"/api/v1/webhooks/{webhook_id}/deliveries?per_page=100"
            ).json()["data"]
    finally:
        receiver.stop()

    delivered = receiver.delivered()
    duplicates = {e: len(d) for e, d in delivered.items() if len(d) != 1}
    by_type: dict[str, int] = {}
    for times in delivered.values():
        by_type[times[0].event_type] = by_type.get(times[0].event_type, 0) + 1
    print(
        f"\n{UPLOADS} chunked uploads (2 chunks each), broker stopped {BROKER_DOWN_SECONDS} s "
        f"mid-way ({figures}); all ready {ready_after:.1f} s after the restart began; "
        f"webhook events received {by_type}, duplicates {len(duplicates)}"
    )
    assert not duplicates, duplicates
    assert by_type == {"video.uploaded": UPLOADS, "video.encoded": UPLOADS}, by_type
    assert {d["event_id"] for d in deliveries} == set(delivered)
    assert all(d["status"] == "succeeded" for d in deliveries)


def run_uploads_across_a_restart(system: System, clip: Path) -> dict[str, Any]:
    """Starts 20 uploads (first chunk each) and finishes half of them; stops RabbitMQ; finishes
    the other half (second chunk, complete) while it is down and as it comes back. Returns
    figures and the video ids."""
    with ThreadPoolExecutor(5) as pool:
        inits = list(pool.map(lambda i: system.chunked_upload_start(clip, f"v{i}"), range(UPLOADS)))
        for init in inits:
            assert init["total_chunks"] == 2, init
        first = pool.map(
            lambda init: system.send_chunk(init["upload_id"], clip, 0, init["chunk_size"]), inits
        )
        assert {r.status_code for r in first} == {200}

    completed_at: list[float] = []

    def finish(init: dict[str, Any]) -> str:
        upload_id = init["upload_id"]
        with_retries(
            lambda: system.send_chunk(upload_id, clip, 1, init["chunk_size"]), what="chunk 1"
        )
        done = with_retries(lambda: system.complete(upload_id), what="complete")
        completed_at.append(time.monotonic())
        video_id: str = done.json()["video_id"]
        return video_id

    half = UPLOADS // 2
    with ThreadPoolExecutor(5) as pool:
        video_ids = list(pool.map(finish, inits[:half]))

    down = threading.Event()
    restart_done = threading.Event()
    window: dict[str, float] = {}
    restart_started = time.monotonic()

    def restart() -> None:
        try:
            with broker_stopped():
                window["from"] = time.monotonic()
                down.set()
                time.sleep(BROKER_DOWN_SECONDS)
            window["to"] = time.monotonic()
        finally:
            down.set()
            restart_done.set()

    restarter = threading.Thread(target=restart)
    restarter.start()
    assert down.wait(120), "the broker did not stop"
    with ThreadPoolExecutor(5) as pool:
        video_ids += list(pool.map(finish, inits[half:]))
    restarter.join(180)
    assert restart_done.is_set()
    assert "to" in window, "the broker did not come back"
    late = completed_at[half:]
    return {
        "video_ids": video_ids,
        "restart_started": restart_started,
        "completed before / while down / after": (
            half,
            sum(1 for t in late if t <= window["to"]),
            sum(1 for t in late if t > window["to"]),
        ),
    }
