"""Upload → encode → play → delete through the gateway, every component its own `avcaption
serve` process (upload, media, media-worker, stats, webhooks, gateway) over real RabbitMQ."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.support.videos import make_video

from .harness import running_stack

pytestmark = [
    pytest.mark.slow,
]


def _ready(gateway: str, headers: dict[str, str], video_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        response = httpx.get(f"{gateway}/api/v1/videos/{video_id}", headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        video: dict[str, Any] = response.json()
        if video["status"] != "processing":
            return video
        assert time.monotonic() < deadline, "still processing after 120 s"
        time.sleep(0.25)


def test_upload_encode_play_and_delete_through_the_gateway(amqp_url: str, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=4, width=640, height=360)
    env = {"AVC_MEDIA_X264_PRESET": "ultrafast", "AVC_MEDIA_LADDER": "360"}
    with running_stack(tmp_path / "stack", bus_url=amqp_url, extra_env=env) as stack:
        # Like `stack.start_services()`, but upload also learns where media listens (it calls
        # media's internal "register"); the harness only tells the gateway.
        media = stack.spawn("media")
        media.wait_ready()
        urls = {"AVC_MEDIA_URL": media.url}
        started = [stack.spawn(n, env=urls) for n in ("upload", "stats", "webhooks")]
        started.append(stack.spawn("media-worker"))
        for component in started:
            component.wait_ready()
        urls |= {f"AVC_{c.name.upper()}_URL": c.url for c in started if c.name != "media-worker"}
        stack.spawn("gateway", env=urls).wait_ready()
        _upload_encode_play_and_delete(stack.gateway.url, stack.api_key(), clip, stack.data_dir)


def test_the_all_in_one_process_runs_the_whole_flow(amqp_url: str, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=4, width=640, height=360)
    env = {"AVC_MEDIA_X264_PRESET": "ultrafast", "AVC_MEDIA_LADDER": "360"}
    with running_stack(tmp_path / "stack", bus_url=amqp_url, extra_env=env) as stack:
        stack.start_all_in_one()
        _upload_encode_play_and_delete(stack.gateway.url, stack.api_key(), clip, stack.data_dir)


def _upload_encode_play_and_delete(gateway: str, key: str, clip: Path, data_dir: Path) -> None:
    headers = {"X-API-Key": key}

    upload = httpx.post(
        f"{gateway}/api/v1/upload",
        headers=headers,
        files={"file": ("clip.mp4", clip.read_bytes(), "video/mp4")},
        data={"title": "End to end"},
        timeout=60,
    )
    assert upload.status_code == 201, upload.text
    created = upload.json()
    video_id, embed_token = created["video_id"], created["embed_token"]
    listed = httpx.get(f"{gateway}/api/v1/videos", headers=headers, timeout=10).json()
    assert [v["id"] for v in listed["data"]] == [video_id]

    video = _ready(gateway, headers, video_id)
    assert video["status"] == "ready", (video["error"], video_id)
    assert video["title"] == "End to end"
    assert [(r["name"], r["width"], r["height"]) for r in video["renditions"]] == [
        ("360p", 640, 360)
    ]

    # Anonymous player: embed metadata, then every file through the gateway's /play.
    embed = httpx.get(f"{gateway}/api/v1/embed/{embed_token}", timeout=10)
    assert embed.status_code == 200, embed.text
    hls_url = embed.json()["hls_url"]
    master = httpx.get(f"{gateway}{hls_url}", timeout=10)
    assert master.status_code == 200
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    base = f"{gateway}{hls_url.rsplit('/', 1)[0]}"
    playlist = httpx.get(f"{base}/360p/index.m3u8", timeout=10).text
    segments = re.findall(r"^seg_\d+\.ts$", playlist, flags=re.MULTILINE)
    assert segments
    for segment in segments:
        response = httpx.get(f"{base}/360p/{segment}", timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp2t"
    ranged = httpx.get(f"{base}/360p/{segments[0]}", headers={"Range": "bytes=0-187"})
    assert ranged.status_code == 206
    assert len(ranged.content) == 188
    assert ranged.content[0] == 0x47  # MPEG-TS sync byte
    views = httpx.post(
        f"{gateway}/api/v1/embed/{embed_token}/views", json={"session_id": "e2e"}, timeout=10
    )
    assert views.status_code == 202

    # Private: anonymous embeds stop, the owner's credentials still work.
    update = httpx.put(
        f"{gateway}/api/v1/videos/{video_id}",
        headers=headers,
        json={"visibility": "private"},
        timeout=10,
    )
    assert update.status_code == 200
    assert httpx.get(f"{gateway}/api/v1/embed/{embed_token}").status_code == 404
    owner = httpx.get(f"{gateway}/api/v1/embed/{embed_token}", headers=headers, timeout=10)
    assert owner.status_code == 200

    deleted = httpx.delete(f"{gateway}/api/v1/videos/{video_id}", headers=headers, timeout=30)
    assert deleted.status_code == 204
    gone = httpx.get(f"{gateway}/api/v1/videos/{video_id}", headers=headers, timeout=10)
    assert gone.status_code == 404
    assert httpx.get(f"{gateway}{hls_url}", timeout=10).status_code == 404
    assert not list((data_dir / "objects" / "videos").glob(f"{video_id}*"))
    assert not list((data_dir / "objects" / "sources").glob(f"{video_id}*"))
