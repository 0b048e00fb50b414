"""Pure pieces of the media service: probing output parsers, the ladder, domains, ranges,
playback tokens, paths, the playback secret and the ffmpeg selection."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from avc_media.config import MediaSettings
from avc_media.domains import host_allowed, normalize_domain, request_host
from avc_media.encoding.ffmpeg import find_binaries
from avc_media.encoding.ladder import h264_level, plan_ladder
from avc_media.encoding.probe import parse_ffprobe_json
from avc_media.errors import InvalidPlaybackToken, PlaybackTokenExpired
from avc_media.playback import (
    ByteRange,
    UnsatisfiableRange,
    mint_playback_token,
    object_key_for,
    parse_range,
    verify_playback_token,
)
from avc_media.secrets_store import SecretsError, resolve_playback_secret


def test_ffprobe_json_is_read() -> None:
    data = {
        "streams": [
            {"codec_type": "video", "codec_name": "mjpeg", "width": 600, "height": 600,
             "disposition": {"attached_pic": 1}},
            {"codec_type": "video", "codec_name": "h264", "width": 1920, "height": 1080,
             "sample_aspect_ratio": "1:1", "avg_frame_rate": "30000/1001",
             "field_order": "progressive",
             "side_data_list": [{"side_data_type": "Display Matrix", "rotation": 90}]},
            {"codec_type": "audio", "codec_name": "aac"},
        ],
        "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "12.345"},
    }  # fmt: skip
    info = parse_ffprobe_json(data)
    assert info is not None
    assert (info.width, info.height) == (1080, 1920)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert info.duration_seconds == 12.345
    assert info.has_audio
    assert info.video_codec == "h264"
    assert parse_ffprobe_json({"streams": [{"codec_type": "audio"}], "format": {}}) is None


def test_the_ladder_never_upscales() -> None:
    heights = (1080, 720, 480, 360)
    full = plan_ladder(1920, 1080, fps=30, heights=heights)
    assert [(r.name, r.width, r.height) for r in full] == [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
        ("360p", 640, 360),
    ]
    assert [r.level for r in full] == [40, 31, 31, 30]
    assert full[0].codecs(audio=True) == "avc1.640028,mp4a.40.2"
    assert full[0].codecs(audio=False) == "avc1.640028"
    assert [r.name for r in plan_ladder(1000, 700, fps=25, heights=heights)] == ["480p", "360p"]
    tiny = plan_ladder(176, 144, fps=15, heights=heights)
    assert [(r.name, r.width, r.height) for r in tiny] == [("144p", 176, 144)]
    portrait = plan_ladder(720, 1280, fps=30, heights=heights)
    assert [(r.name, r.width, r.height) for r in portrait] == [
        ("720p", 720, 1280),
        ("480p", 480, 854),
        ("360p", 360, 640),
    ]
    fast = plan_ladder(1920, 1080, fps=60, heights=heights)
    assert fast[0].video_kbps > full[0].video_kbps
    assert fast[0].level == 42
    assert h264_level(3840, 2160, 30, 20000) == 51


def test_domain_entries() -> None:
    assert normalize_domain(" Example.COM. ") == "example.com"
    assert normalize_domain("*.Example.com") == "*.example.com"
    assert normalize_domain("münchen.de") == "xn--mnchen-3ya.de"
    assert normalize_domain("localhost") == "localhost"
    for bad in ("", "*", "*.com", "http://a.com", "a.com/x", "a.com:80", "a..com", "a_b.com"):
        with pytest.raises(ValueError):
            normalize_domain(bad)
    assert request_host("https://A.example.com:8443", None) == "a.example.com"
    assert request_host(None, "http://b.example.com/x?y") == "b.example.com"
    assert request_host("null", None) is None
    assert request_host(None, None) is None
    assert host_allowed(None, [])
    assert not host_allowed(None, ["a.com"])
    assert host_allowed("x.a.com", ["*.a.com"])
    assert not host_allowed("a.com", ["*.a.com"])
    assert not host_allowed("xa.com", ["*.a.com"])
    assert host_allowed("xn--mnchen-3ya.de", ["xn--mnchen-3ya.de"])


def test_ranges() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == ByteRange(0, 10)
    assert parse_range("bytes=90-", 100) == ByteRange(90, 10)
    assert parse_range("bytes=-5", 100) == ByteRange(95, 5)
    assert parse_range("bytes=-500", 100) == ByteRange(0, 100)
    assert parse_range("bytes=50-5000", 100) == ByteRange(50, 50)
    assert parse_range("bytes=5-1", 100) is None
    assert parse_range("bytes=1-2,4-5", 100) is None
    assert parse_range("pages=1-2", 100) is None
    for unsatisfiable in ("bytes=100-", "bytes=-0", "bytes=200-300"):
        with pytest.raises(UnsatisfiableRange):
            parse_range(unsatisfiable, 100)
    with pytest.raises(UnsatisfiableRange):
        parse_range("bytes=-1", 0)


def test_playback_tokens() -> None:
    secret = b"s" * 32
    video_id = "vid_" + "a" * 25
    token = mint_playback_token(video_id, secret=secret, ttl_seconds=60, now=1_000_000)
    grant = verify_playback_token(token, secret=secret, now=1_000_030)
    assert (grant.video_id, grant.expires_at) == (video_id, 1_000_060)
    assert "/" not in token
    assert "+" not in token
    with pytest.raises(PlaybackTokenExpired):
        verify_playback_token(token, secret=secret, now=1_000_060)
    with pytest.raises(InvalidPlaybackToken):
        verify_playback_token(token, secret=b"t" * 32, now=1_000_000)
    with pytest.raises(InvalidPlaybackToken):
        verify_playback_token(token + "x", secret=secret, now=1_000_000)
    with pytest.raises(InvalidPlaybackToken):
        verify_playback_token("x" * 500, secret=secret, now=1_000_000)


def test_only_files_under_the_video_can_be_named() -> None:
    video_id = "vid_" + "a" * 25
    assert object_key_for(video_id, "master.m3u8") == f"videos/{video_id}/master.m3u8"
    assert object_key_for(video_id, "720p/seg_00001.ts") == f"videos/{video_id}/720p/seg_00001.ts"
    assert object_key_for(video_id, "subtitles/sub_1.vtt") is not None
    for bad in (
        "../x.ts",
        "720p/../../sources/x.ts",
        "..",
        "",
        "/master.m3u8",
        ".m3u8",
        "a//b.ts",
        "a/b/c/d.ts",
        "original",
        "x.exe",
        "x\x00.ts",
        "x%2f..%2fy.ts",
        "x\\..\\y.ts",
    ):
        assert object_key_for(video_id, bad) is None, bad


def test_the_playback_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = MediaSettings()
    secret, path = resolve_playback_secret(settings, tmp_path)
    assert path == tmp_path / "secrets" / "media.json"
    assert len(secret) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert resolve_playback_secret(settings, tmp_path) == (secret, path)
    given = MediaSettings(playback_secret=SecretStr("g" * 40))
    assert resolve_playback_secret(given, tmp_path) == (b"g" * 40, None)
    path.write_text("{}")
    with pytest.raises(SecretsError):
        resolve_playback_secret(settings, tmp_path)
    with pytest.raises(ValidationError):
        MediaSettings(playback_secret=SecretStr("short"))


def test_ffmpeg_selection(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no system ffmpeg
    chosen = find_binaries(MediaSettings())
    assert "imageio_ffmpeg" in chosen.ffmpeg
    exe = tmp_path / "ffmpeg"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    system = find_binaries(MediaSettings())
    assert system.ffmpeg == str(tmp_path / "ffmpeg")
    explicit = find_binaries(MediaSettings(ffmpeg_path="/opt/ff/ffmpeg"))
    assert explicit.ffmpeg == "/opt/ff/ffmpeg"
