"""The webhook receiver is down (connection refused) for several attempts, then comes up:
every event is delivered exactly once, and the attempts follow the retry schedule (shortened
with AVC_WEBHOOKS_RETRY_SCHEDULE for the test)."""

from __future__ import annotations

import itertools
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.support.s3 import S3Server
from tests.support.videos import make_video

from .system import System, WebhookReceiver, running_system

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCHEDULE = (1.0, 1.5, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0)
DOWN_FOR_ATTEMPTS = 3
VIDEOS = 2


def deliveries(system: System, webhook_id: str) -> list[dict[str, Any]]:
    response = system.request("GET", f"/api/v1/webhooks/{webhook_id}/deliveries?per_page=100")
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def wait_for(what: str, check: Any, *, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        time.sleep(0.25)


def test_receiver_down_then_up_gets_every_event_once_on_schedule(
    tmp_path: Path, moto_server: S3Server
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1)
    env = {
        "AVC_WEBHOOKS_RETRY_SCHEDULE": ",".join(str(s) for s in SCHEDULE),
        "AVC_WEBHOOKS_RETRY_JITTER": "0",
    }
    receiver = WebhookReceiver()  # its port is chosen, nothing listens there yet
    with running_system(tmp_path / "sys", moto_server, env=env) as system:
        created = system.request("POST", "/api/v1/webhooks", json={"url": receiver.url})
        assert created.status_code == 201, created.text
        webhook_id = created.json()["id"]
        video_ids = []
        for i in range(VIDEOS):
            upload = system.request(
                "POST", "/api/v1/upload", files={"file": (f"c{i}.mp4", clip.read_bytes())}
            )
            assert upload.status_code == 201, upload.text
            video_ids.append(upload.json()["video_id"])

        # Down: every `video.uploaded` delivery fails DOWN_FOR_ATTEMPTS times first.
        def uploaded_failed_enough() -> bool:
            uploaded = [
                d for d in deliveries(system, webhook_id) if d["event_type"] == "video.uploaded"
            ]
            return len(uploaded) == VIDEOS and all(
                d["attempts"] >= DOWN_FOR_ATTEMPTS for d in uploaded
            )

        wait_for("failed attempts while the receiver is down", uploaded_failed_enough, within=60)
        up_at = time.time()
        receiver.start()
        try:
            system.wait_videos(video_ids, within=120)

            def all_succeeded() -> list[dict[str, Any]] | None:
                found = deliveries(system, webhook_id)
                done = len(found) == 2 * VIDEOS and all(d["status"] == "succeeded" for d in found)
                return found if done else None

            found = wait_for("every delivery succeeded", all_succeeded, within=60)
            time.sleep(2)  # room for a duplicate to show up, were there one
        finally:
            receiver.stop()

    delivered = receiver.delivered()
    event_ids = {d["event_id"] for d in found}
    assert set(delivered) == event_ids, (set(delivered), event_ids)
    assert all(len(times) == 1 for times in delivered.values()), delivered
    assert {d["event_type"] for d in found} == {"video.uploaded", "video.encoded"}
    report = []
    for delivery in found:
        log = delivery["attempt_log"]
        assert [a["attempt"] for a in log] == list(range(1, len(log) + 1))
        assert log[-1]["outcome"] == "success"
        assert all(a["outcome"] == "network_error" for a in log[:-1]), log
        starts = [datetime.fromisoformat(a["started_at"]).timestamp() for a in log]
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # Never earlier than the schedule says (each gap is measured start to start, so it
        # also holds the failed attempt's own duration).
        for i, gap in enumerate(gaps):
            assert gap >= SCHEDULE[i] - 0.05, (i, gap, SCHEDULE[i], delivery["event_type"])
        if delivery["event_type"] == "video.uploaded":
            assert len(log) >= DOWN_FOR_ATTEMPTS + 1, log
            assert starts[-1] >= up_at - 0.05
        report.append(
            f"{delivery['event_type']}: {len(log)} attempts, gaps {[round(g, 2) for g in gaps]}"
        )
    print(
        f"\nreceiver down for >= {DOWN_FOR_ATTEMPTS} attempts, then up; schedule {SCHEDULE}; "
        f"{len(delivered)} events delivered once each\n  " + "\n  ".join(report)
    )
