"""The encode worker in-process with real ffmpeg: HLS ladder, rejections, leases, re-drive."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.media.conftest import Media, caller_headers
from tests.support.assertions import eventually
from tests.support.videos import ffmpeg_exe, make_video

from avc_common.events import ErrorInfo, Event, VideoEncoded, VideoFailed
from avc_common.events import video_uploaded_event_id as uploaded_event_id
from avc_common.timeutil import utcnow
from avc_media.config import MediaSettings
from avc_media.encoding.ffmpeg import find_binaries
from avc_media.encoding.probe import probe_media
from avc_media.repository import Video
from avc_media.worker import uploaded_event

pytestmark = pytest.mark.slow
ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')


async def _fetch(media: Media, url: str) -> bytes:
    response = await media.client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.text[:200])
    return response.content


def _uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def _stream_inf(master: str) -> list[dict[str, str]]:
    return [
        {k: v.strip('"') for k, v in ATTRIBUTE.findall(line.split(":", 1)[1])}
        for line in master.splitlines()
        if line.startswith("#EXT-X-STREAM-INF:")
    ]


async def test_a_10s_720p_upload_becomes_a_playable_hls_ladder(
    make_media: Any, tmp_path: Path
) -> None:
    source = make_video(tmp_path / "lesson.mp4", seconds=10, width=1280, height=720)
    async with make_media(worker=True) as media:
        started = time.monotonic()
        video_id = await media.upload("acct_a", source)
        video = await media.wait_status("acct_a", video_id)
        elapsed = time.monotonic() - started
        assert video["status"] == "ready", video["error"]
        assert video["error"] is None
        assert video["duration_seconds"] == pytest.approx(10.0, abs=0.1)
        assert (video["width"], video["height"]) == (1280, 720)
        names = [r["name"] for r in video["renditions"]]
        assert names == ["720p", "480p", "360p"]  # no 1080p: never upscaled
        sizes = {r["name"]: (r["width"], r["height"]) for r in video["renditions"]}
        assert sizes == {"720p": (1280, 720), "480p": (854, 480), "360p": (640, 360)}
        assert all(r["bitrate_kbps"] > 0 for r in video["renditions"])

        # The master playlist lists every rendition with BANDWIDTH, RESOLUTION and CODECS.
        master = (await _fetch(media, video["hls_url"])).decode()
        assert master.startswith("#EXTM3U\n")
        variants = _stream_inf(master)
        assert [v["RESOLUTION"] for v in variants] == ["1280x720", "854x480", "640x360"]
        assert _uris(master) == ["720p/index.m3u8", "480p/index.m3u8", "360p/index.m3u8"]
        for variant in variants:
            assert int(variant["BANDWIDTH"]) > 0
            assert variant["CODECS"].startswith("avc1.6400")
            assert variant["CODECS"].endswith(",mp4a.40.2")

        # Every playlist and segment it references loads through /play, relative URIs intact.
        base = video["hls_url"].rsplit("/", 1)[0]
        downloaded: dict[str, bytes] = {}
        for uri in _uris(master):
            playlist = (await _fetch(media, f"{base}/{uri}")).decode()
            assert "#EXT-X-ENDLIST" in playlist
            assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist
            durations = [
                float(line.split(":")[1].rstrip(","))
                for line in playlist.splitlines()
                if line.startswith("#EXTINF:")
            ]
            assert sum(durations) == pytest.approx(10.0, abs=0.2)
            assert all(d <= 6.5 for d in durations)  # 6 s segments
            rung = uri.split("/")[0]
            chunks = [await _fetch(media, f"{base}/{rung}/{seg}") for seg in _uris(playlist)]
            assert len(chunks) == 2
            downloaded[rung] = b"".join(chunks)
        poster = await _fetch(media, video["thumbnail_url"])
        assert poster[:3] == b"\xff\xd8\xff"

        # Probing a downloaded rendition shows its declared resolution (and audio, duration).
        settings = MediaSettings()
        for rung, data in downloaded.items():
            path = tmp_path / f"{rung}.ts"
            path.write_bytes(data)
            info = await probe_media(find_binaries(settings), path, settings=settings)
            assert (info.width, info.height) == sizes[rung]
            assert info.video_codec == "h264"
            assert info.has_audio
            assert info.duration_seconds == pytest.approx(10.0, abs=0.3)

        # Events: video.encoded with what was stored.
        await eventually(lambda: bool(media.of_type("video.encoded")))
        [encoded] = media.of_type("video.encoded")
        payload = encoded.payload()
        assert isinstance(payload, VideoEncoded)
        stored = sum(o.size for o in await media.objects.list(f"videos/{video_id}"))
        assert payload.renditions_bytes == stored
        assert [r.name for r in payload.renditions] == names
        assert encoded.account_id == "acct_a"
        print(f"10 s 720p clip: stored+registered -> ready in {elapsed:.2f}s")

        # A redelivered event for a ready video changes nothing.
        await media.bus.publish(media.of_type("video.uploaded")[0])
        await asyncio.sleep(0.5)
        assert len(media.of_type("video.encoded")) == 1
        assert (await media.video("acct_a", video_id))["updated_at"] == video["updated_at"]


async def test_sources_without_audio_small_and_portrait(make_media: Any, tmp_path: Path) -> None:
    silent = make_video(tmp_path / "silent.mp4", seconds=1, width=320, height=240, audio=False)
    portrait = make_video(tmp_path / "portrait.mp4", seconds=1, width=360, height=640)
    async with make_media(worker=True) as media:
        silent_id = await media.upload("acct_a", silent)
        portrait_id = await media.upload("acct_a", portrait)
        video = await media.wait_status("acct_a", silent_id)
        assert video["status"] == "ready", video["error"]
        # Smaller than every rung: one rendition at its own size.
        assert [(r["name"], r["width"], r["height"]) for r in video["renditions"]] == [
            ("240p", 320, 240)
        ]
        master = (await _fetch(media, video["hls_url"])).decode()
        assert 'CODECS="avc1.6400' in master
        assert "mp4a" not in master
        upright = await media.wait_status("acct_a", portrait_id)
        assert upright["status"] == "ready", upright["error"]
        assert (upright["width"], upright["height"]) == (360, 640)
        assert [(r["name"], r["width"], r["height"]) for r in upright["renditions"]] == [
            ("360p", 360, 640)
        ]


async def _failed_with(media: Media, video_id: str, code: str) -> dict[str, Any]:
    video = await media.wait_status("acct_a", video_id)
    assert video["status"] == "failed"
    assert video["error"]["code"] == code
    message = video["error"]["message"]
    assert message[0].isupper()
    assert "ffmpeg" not in message.lower()
    assert "\n" not in message
    assert video["hls_url"] is None
    await eventually(
        lambda: any(e.data["video_id"] == video_id for e in media.of_type("video.failed"))
    )
    [event] = [e for e in media.of_type("video.failed") if e.data["video_id"] == video_id]
    payload = event.payload()
    assert isinstance(payload, VideoFailed)
    assert payload.error.code == code
    assert payload.error.message == message
    return video


async def test_a_text_file_named_mp4_fails_with_a_clear_error(
    make_media: Any, tmp_path: Path
) -> None:
    fake = tmp_path / "movie.mp4"
    fake.write_text("This is not a video, just some text.\n" * 50)
    playlist = tmp_path / "evil.mp4"
    # An HLS playlist in disguise must not make ffmpeg read anything else.
    playlist.write_text("#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/x.ts\n#EXTINF:10,\n/etc/passwd\n")
    async with make_media(worker=True) as media:
        text_id = await media.upload("acct_a", fake)
        playlist_id = await media.upload("acct_a", playlist)
        video = await _failed_with(media, text_id, "invalid_media")
        assert video["error"]["message"].startswith("The file is not a playable video")
        await _failed_with(media, playlist_id, "invalid_media")
        assert await media.objects.list(f"videos/{text_id}") == []


async def test_too_long_and_too_large_videos_fail(make_media: Any, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=3, width=320, height=240)
    async with make_media(
        worker=True, max_duration_seconds=2, max_width=300, max_height=300
    ) as media:
        too_long = await media.upload("acct_a", clip)
        video = await _failed_with(media, too_long, "duration_exceeded")
        assert "0:03" in video["error"]["message"]
        assert "0:02" in video["error"]["message"]
    async with make_media(worker=True, max_width=300, max_height=200) as media:
        too_large = await media.upload("acct_a", clip)
        video = await _failed_with(media, too_large, "resolution_exceeded")
        assert "320x240" in video["error"]["message"]


async def test_a_missing_source_fails(make_media: Any) -> None:
    async with make_media(worker=True) as media:
        registered = (await media.register("acct_a")).json()
        doc = await media.app.state.documents.collection("videos").find_one(
            {"_id": registered["video_id"]}
        )
        await media.bus.publish(uploaded_event(Video.from_doc(doc)))
        await _failed_with(media, registered["video_id"], "source_missing")


# ---- leases and re-drive -------------------------------------------------------------------


async def _stored_unpublished(media: Media, path: Path, **fields: Any) -> str:
    """A registered video with its source stored, whose `video.uploaded` never arrived."""
    video_id: str = (await media.register("acct_a")).json()["video_id"]
    data = await asyncio.to_thread(path.read_bytes)
    await media.objects.put(f"sources/{video_id}/original", data)
    if fields:
        await media.app.state.documents.collection("videos").update_one(
            {"_id": video_id}, {"$set": fields}
        )
    return video_id


async def test_redrive_requeues_stale_leases_and_forgotten_videos(
    make_media: Any, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, width=320, height=240)
    async with make_media(worker=True, redrive_after_seconds=60) as media:
        past = utcnow() - timedelta(minutes=5)
        dead = await _stored_unpublished(
            media,
            clip,
            lease_owner="dead-worker",
            lease_expires_at=past,
            encode_attempts=1,
            upload_event_id="evt_original",
        )
        forgotten = await _stored_unpublished(media, clip, created_at=past)
        recent = await _stored_unpublished(media, clip)  # may still be on its way: left alone
        worker = media.worker_app.state.encode_worker
        counts = await worker.redrive_once()
        assert counts["lease_expired"] == 1
        assert counts["never_started"] == 1
        for video_id in (dead, forgotten):
            assert (await media.wait_status("acct_a", video_id))["status"] == "ready"
        assert (await media.video("acct_a", recent))["status"] == "processing"
        republished = {e.data["video_id"]: e for e in media.of_type("video.uploaded")}
        # The original event id when a worker saw it, else a deterministic one.
        assert republished[dead].id == "evt_original"
        assert republished[forgotten].id == uploaded_event_id(forgotten)
        assert uploaded_event_id(forgotten) == uploaded_event_id(forgotten)
        # A second round finds nothing to do.
        again = await worker.redrive_once()
        assert again["lease_expired"] == again["never_started"] == 0


async def test_the_worker_redrives_periodically_for_its_lifetime(
    make_media: Any, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, width=320, height=240)
    async with make_media(
        worker=True, redrive_interval_seconds=0.2, redrive_after_seconds=0.5
    ) as media:
        redrive = media.worker_app.state.media_redrive
        await eventually(lambda: redrive.stats.passes >= 1)
        # Stored after the first pass: only a later pass can find it.
        video_id = await _stored_unpublished(media, clip)
        video = await media.wait_status("acct_a", video_id, within=60)
        assert video["status"] == "ready", video["error"]
        assert [e.data["video_id"] for e in media.of_type("video.uploaded")] == [video_id]
        assert redrive.stats.passes >= 2
        assert redrive.stats.failures == 0
    assert not redrive.running  # stopped with the app


async def test_too_many_attempts_fail_the_video(make_media: Any, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, width=320, height=240)
    async with make_media(worker=True, max_encode_attempts=2) as media:
        video_id = await _stored_unpublished(
            media,
            clip,
            lease_owner="dead",
            lease_expires_at=utcnow() - timedelta(seconds=1),
            encode_attempts=2,
        )
        await media.worker_app.state.encode_worker.redrive_once()
        await _failed_with(media, video_id, "encode_failed")


async def test_a_live_lease_of_another_worker_is_waited_for(
    make_media: Any, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, width=320, height=240)
    async with make_media(worker=True, lease_seconds=4) as media:
        # Another worker (dead, but its lease has 2 s left) holds the video; the bus
        # redelivers its message to us.
        video_id = await _stored_unpublished(
            media,
            clip,
            lease_owner="dead",
            lease_expires_at=utcnow() + timedelta(seconds=2),
            encode_attempts=1,
        )
        doc = await media.app.state.documents.collection("videos").find_one({"_id": video_id})
        started = time.monotonic()
        await media.bus.publish(uploaded_event(Video.from_doc(doc)))
        video = await media.wait_status("acct_a", video_id)
        assert video["status"] == "ready"
        assert time.monotonic() - started >= 1.5
        stored = await media.app.state.documents.collection("videos").find_one({"_id": video_id})
        assert stored["encode_attempts"] == 2
        assert "lease_owner" not in stored


async def test_deleting_a_video_mid_encode_stops_the_encode(
    make_media: Any, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=8, width=640, height=360)
    async with make_media(worker=True, lease_seconds=2) as media:
        video_id = await media.upload("acct_a", clip)
        coll = media.app.state.documents.collection("videos")
        deadline = time.monotonic() + 30
        while (await coll.find_one({"_id": video_id})).get("lease_owner") is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        response = await media.client.delete(
            f"/api/v1/videos/{video_id}", headers=caller_headers("acct_a")
        )
        assert response.status_code == 204
        await asyncio.sleep(3)  # a couple of lease renewals
        worker_metrics = media.worker_app.state.encode_worker.metrics
        assert worker_metrics.in_progress._value.get() == 0
        assert await media.objects.list(f"videos/{video_id}") == []
        assert media.of_type("video.encoded") == []
        assert len(media.of_type("video.deleted")) == 1


async def test_events_left_in_the_outbox_are_sent_by_the_redrive(
    make_media: Any, tmp_path: Path
) -> None:
    async with make_media(worker=True) as media:
        video_id = (await media.register("acct_a")).json()["video_id"]
        parked = Event.of(
            VideoFailed(video_id=video_id, error=ErrorInfo(code="x", message="X.")),
            account_id="acct_a",
        )
        coll = media.app.state.documents.collection("videos")
        await coll.update_one(
            {"_id": video_id},
            {
                "$set": {
                    f"outbox.{parked.id}": parked.model_dump(mode="json"),
                    "outbox_at": utcnow() - timedelta(minutes=5),
                }
            },
        )
        counts = await media.worker_app.state.encode_worker.redrive_once()
        assert counts["outbox"] == 1
        await eventually(lambda: bool(media.of_type("video.failed")))
        assert media.of_type("video.failed")[0].id == parked.id
        doc = await coll.find_one({"_id": video_id})
        assert "outbox_at" not in doc
        assert not doc.get("outbox")


def _short_picture(path: Path) -> Path:
    """1 s of picture, 12 s of sound: the usual poster instant (1.2 s) has no frame."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1"]
    cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=12"]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"]
    subprocess.run([*cmd, str(path)], check=True, timeout=120)
    return path


async def test_a_video_track_shorter_than_the_file_still_gets_a_poster(
    make_media: Any, tmp_path: Path
) -> None:
    path = _short_picture(tmp_path / "short-picture.mp4")
    async with make_media(worker=True) as media:
        video_id = await media.upload("acct_a", path)
        video = await media.wait_status("acct_a", video_id)
        assert video["status"] == "ready", video["error"]
        assert video["duration_seconds"] == pytest.approx(12.0, abs=0.2)
        poster = await _fetch(media, video["thumbnail_url"])
        assert poster[:3] == b"\xff\xd8\xff"


async def test_after_a_restart_with_the_in_process_bus_queued_videos_are_encoded(
    make_media: Any, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, width=320, height=240)
    # All-in-one stopped after registering (the in-process bus loses the queued event).
    async with make_media() as media:
        video_id = await _stored_unpublished(media, clip)
    # Restarted (redrive_after is an hour here): the first re-drive round re-queues it.
    async with make_media(worker=True) as media:
        video = await media.wait_status("acct_a", video_id, within=60)
        assert video["status"] == "ready", video["error"]


async def test_duplicate_deliveries_encode_once(make_media: Any, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=2, width=320, height=240)
    async with make_media(worker=True, encode_concurrency=2) as media:
        video_id = await media.upload("acct_a", clip)
        doc = await media.app.state.documents.collection("videos").find_one({"_id": video_id})
        # e.g. a re-drive racing the original
        await media.bus.publish(uploaded_event(Video.from_doc(doc)))
        assert (await media.wait_status("acct_a", video_id))["status"] == "ready"
        await asyncio.sleep(0.5)
        stored = await media.app.state.documents.collection("videos").find_one({"_id": video_id})
        assert stored["encode_attempts"] == 1
        assert len(media.of_type("video.encoded")) == 1
