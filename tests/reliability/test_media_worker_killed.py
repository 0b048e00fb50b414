"""A media worker is killed (SIGKILL) in the middle of an encode: its ffmpeg dies with it,
another worker takes the video over once the lease runs out, and the video becomes ready."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psutil
import pytest
from tests.support.s3 import S3Server
from tests.support.videos import make_video

from .system import running_system

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LEASE_SECONDS = 4


def sample(url: str, series: str) -> float | None:
    """Returns the value of one series (`name` or `name{labels}`) on a /metrics page."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def _cmdline(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:  # ended meanwhile
        return []


def encodes_in_progress(url: str) -> float:
    return sample(url, "avc_media_encodes_in_progress") or 0.0


def test_media_worker_killed_mid_encode_then_video_ready(
    tmp_path: Path, moto_server: S3Server
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=20, width=640, height=360)
    env = {
        "AVC_MEDIA_LEASE_SECONDS": str(LEASE_SECONDS),
        "AVC_MEDIA_REDRIVE_INTERVAL_SECONDS": "2",
        "AVC_MEDIA_X264_PRESET": "medium",  # slow enough to be killed in the middle
        "AVC_MEDIA_LADDER": "360,240",
        "AVC_MEDIA_FFMPEG_THREADS": "1",
    }
    with running_system(
        tmp_path / "sys", moto_server, workers=("media-worker",), env=env
    ) as system:
        upload = system.request(
            "POST", "/api/v1/upload", files={"file": ("c.mp4", clip.read_bytes())}
        )
        assert upload.status_code == 201, upload.text
        video_id = upload.json()["video_id"]
        worker = system.stack["media-worker"]
        deadline = time.monotonic() + 60
        while encodes_in_progress(worker.url) < 1:
            assert time.monotonic() < deadline, "the encode never started"
            time.sleep(0.1)
        # Wait for the encoder itself (the probe may run in a child of its own first).
        while True:
            children = psutil.Process(worker.pid).children(recursive=True)
            ffmpegs = [c for c in children if "ffmpeg" in " ".join(_cmdline(c))]
            if ffmpegs:
                break
            assert encodes_in_progress(worker.url) >= 1, "the encode ended before ffmpeg was seen"
            assert time.monotonic() < deadline, "no ffmpeg within 60 s of the upload"
            time.sleep(0.05)
        time.sleep(0.3)  # into ffmpeg's work, not its start
        killed_at = time.monotonic()
        pid = system.kill9("media-worker")
        assert system.video(video_id)["status"] == "processing"
        _, alive = psutil.wait_procs(ffmpegs, timeout=15)
        assert not alive, f"ffmpeg outlived its killed worker: {alive}"

        replacement = system.stack.spawn("media-worker", env=system.service_urls())
        replacement.wait_ready()
        video = system.wait_videos([video_id], within=180)[video_id]
        took = time.monotonic() - killed_at
        assert video["status"] == "ready", video
        assert video["renditions"], video
        # The replacement's metrics: the video's seconds encoded, and its queue sampled.
        encoded = sample(replacement.url, "avc_media_encoded_video_seconds_total")
        assert encoded == pytest.approx(video["duration_seconds"], abs=0.01), encoded
        queue = f"{system.stack.queue_prefix}.media.encode"
        deadline = time.monotonic() + 30
        while sample(replacement.url, f'avc_bus_queue_consumers{{queue="{queue}"}}') is None:
            assert time.monotonic() < deadline, "the bus watchdog never sampled the queue"
            time.sleep(0.5)
        assert sample(replacement.url, f'avc_bus_queue_consumers{{queue="{queue}"}}') == 1
        assert sample(replacement.url, f'avc_bus_queue_messages{{queue="{queue}.dead"}}') == 0
        print(
            f"\nmedia-worker pid {pid} killed mid-encode ({len(ffmpegs)} ffmpeg process(es) "
            f"died with it); lease {LEASE_SECONDS} s; the replacement made the video ready "
            f"{took:.1f} s after the kill"
        )
