"""Pure pieces of the encode plan: the real frame rate from timestamps, the output rate, the
stream facts (colour, audio track, sound-only), the colour conversion; and the `avprobe` child
on files it must refuse."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from tests.support.videos import make_video

from avc_media.config import MediaSettings
from avc_media.encoding import probe
from avc_media.encoding.colour import Colour, output_tags, sdr_filter
from avc_media.encoding.framerate import output_rate, snap, sustained_rate
from avc_media.encoding.plan import plan_encode
from avc_media.encoding.probe import MediaRejected, is_sound_only, parse_ffprobe_json, read_facts


def _frames(rate: float, seconds: float, start: float = 0.0) -> list[float]:
    return [start + i / rate for i in range(round(rate * seconds))]


def test_the_real_rate_is_the_fastest_one_kept_up() -> None:
    assert sustained_rate(_frames(25, 2)) == pytest.approx(25)
    # 24 then 60 fps: the average is 42, tbr 120; what is seen is 60.
    vfr = _frames(24, 1) + _frames(60, 1, start=1)
    assert sustained_rate(vfr) == pytest.approx(60, rel=0.01)
    # With a 0.5 s hole between the two.
    assert sustained_rate(_frames(24, 1) + _frames(60, 1, start=1.5)) == pytest.approx(60, rel=0.01)
    # 30 fps with 2 frames of every 5 dropped: the average is 18, the rate still 30.
    dropped = [t for i, t in enumerate(_frames(30, 2)) if i % 5 not in (1, 2)]
    assert sustained_rate(dropped) == pytest.approx(30, rel=0.01)
    # Millisecond timestamps (Matroska) jitter: 16/17/17 ms is 60 fps, not 62.5.
    jitter = [round(t, 3) for t in _frames(60, 2)]
    assert sustained_rate(jitter) == pytest.approx(60, rel=0.005)
    # Out of order (B-frames) and repeated timestamps change nothing.
    shuffled = _frames(30, 1)[::-1] + _frames(30, 1)
    assert sustained_rate(shuffled) == pytest.approx(30)
    assert sustained_rate([1.0]) is None
    assert sustained_rate([]) is None


def test_the_output_rate_is_standard_and_at_most_60() -> None:
    assert output_rate(60.0) == 60
    assert output_rate(59.94) == Fraction(60000, 1001)
    assert output_rate(29.97) == Fraction(30000, 1001)
    assert output_rate(30.02) == 30
    assert output_rate(120.0) == 60
    assert output_rate(119.88) == Fraction(60000, 1001)
    assert output_rate(100.0) == 50
    assert output_rate(240.0) == 60
    assert output_rate(12.5) == Fraction(25, 2)
    assert output_rate(None) == 30
    assert output_rate(float("nan")) == 30
    assert snap(41.712) == Fraction(41712, 1000)


def _facts(
    video: dict[str, Any], *extra: dict[str, Any], rate: float | None = None
) -> dict[str, Any]:
    stream = {"codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720, **video}
    return {
        "streams": [stream, *extra],
        "format": {"format_name": "matroska,webm", "duration": "2.0"},
        "frame_timing": {"sustained_rate": rate, "packets": 84, "seconds": 2.0},
    }


def test_facts_and_the_plan_made_of_them() -> None:
    silent = {"codec_type": "audio", "disposition": {"default": 0}}
    default = {"codec_type": "audio", "disposition": {"default": 1}}
    data = _facts(
        {"avg_frame_rate": "42/1", "r_frame_rate": "120/1", "sample_aspect_ratio": "32:27"},
        silent,
        default,
        {"codec_type": "subtitle"},
        rate=60.0,
    )
    info = parse_ffprobe_json(data)
    assert info is not None
    assert (info.width, info.height) == (1517, 720)  # 32:27 pixels, shown wide
    assert (info.fps, info.average_fps) == (60.0, 42.0)
    assert (info.audio_track, info.audio_tracks, info.subtitle_tracks) == (1, 2, 1)
    plan = plan_encode(info, heights=(720, 360))
    assert plan.rate == 60
    assert plan.audio_track == 1
    assert [(r.width, r.height, r.level) for r in plan.rungs] == [(1516, 720, 42), (758, 360, 31)]
    assert plan.colour_filter == ""
    assert plan.colour_tags == ()

    # No timing (a single frame): the container's average counts; no audio: silent plan.
    still = parse_ffprobe_json(_facts({"avg_frame_rate": "25/1"}))
    assert still is not None
    assert still.fps == 25.0
    assert plan_encode(still, heights=(360,)).audio_track is None


def test_sound_only_files_are_told_apart() -> None:
    cover = {"codec_type": "video", "width": 600, "height": 600, "disposition": {"attached_pic": 1}}
    mp3 = {"streams": [{"codec_type": "audio"}, cover], "format": {}}
    assert parse_ffprobe_json(mp3) is None
    assert is_sound_only(mp3)
    assert not is_sound_only({"streams": [{"codec_type": "data"}], "format": {}})
    assert not is_sound_only(_facts({}, {"codec_type": "audio"}))


def test_hdr_is_tone_mapped_and_tagged_bt709() -> None:
    hlg = Colour(primaries="bt2020", transfer="arib-std-b67", matrix="bt2020nc", range="tv")
    chain = sdr_filter(hlg)
    assert chain.startswith("zscale=tin=arib-std-b67:pin=bt2020:min=bt2020nc:rin=tv:t=linear")
    assert "tonemap=tonemap=hable" in chain
    assert chain.endswith("zscale=t=bt709:m=bt709:r=tv,format=yuv420p")
    assert "-color_trc" in output_tags(hlg)
    # Scaled to the largest rung first, in the same zscale.
    assert ":rin=tv:w=1280:h=720:t=linear" in sdr_filter(hlg, size=(1280, 720))
    # PQ with nothing else stated is read as BT.2020.
    assert "tin=smpte2084:pin=bt2020:min=bt2020nc" in sdr_filter(Colour(transfer="smpte2084"))
    # Wide gamut SDR: primaries converted, no tone mapping.
    wide = sdr_filter(Colour(primaries="bt2020", transfer="bt2020-10", matrix="bt2020nc"))
    assert "p=bt709" in wide
    assert "tonemap" not in wide
    for sdr in (Colour(), Colour("bt709", "bt709", "bt709", "tv"), Colour("smpte170m")):
        assert sdr_filter(sdr) == ""
        assert output_tags(sdr) == ()


def _avprobe(path: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-I", "-m", "avc_media.encoding.avprobe", str(path)],
        capture_output=True,
        timeout=60,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def test_avprobe_reads_real_files_and_refuses_others(tmp_path: Path) -> None:
    code, facts = _avprobe(make_video(tmp_path / "clip.mp4", seconds=1, width=160, height=120))
    assert code == 0
    assert [s["codec_type"] for s in facts["streams"]] == ["video", "audio"]
    assert facts["frame_timing"]["sustained_rate"] == pytest.approx(25)
    assert facts["streams"][0]["side_data_list"] == [{"rotation": 0}]
    text = tmp_path / "notes.mp4"
    text.write_text("This is not a video, just some text.\n" * 50)
    playlist = tmp_path / "evil.mp4"  # must not make the demuxer open anything else
    playlist.write_text("#EXTM3U\n#EXTINF:10,\nhttp://127.0.0.1:9/x.ts\n#EXTINF:10,\n/etc/passwd\n")
    for refused in (text, playlist, tmp_path / "missing.mp4"):
        code, facts = _avprobe(refused)
        assert code == 1
        assert set(facts) == {"error"}


async def test_a_failing_avprobe_child_is_not_blamed_on_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=1, width=160, height=120)
    settings = MediaSettings()
    assert (await read_facts(clip, settings=settings))["streams"]
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 100)
    with pytest.raises(MediaRejected) as rejected:
        await read_facts(text, settings=settings)
    assert rejected.value.code == "invalid_media"
    # A broken installation (PyAV missing, say): an error of the worker, so the encode retries.
    monkeypatch.setattr(
        probe, "avprobe_command", lambda path, s: [sys.executable, "-c", "import no_such_module"]
    )
    with pytest.raises(RuntimeError):
        await read_facts(clip, settings=settings)
