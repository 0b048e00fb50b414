"""The kinds of file people upload, each made with ffmpeg from lavfi sources (tiny, 1-2 s), and
what the platform must make of it. Used by test_input_matrix.py.

Sizes are small on purpose: the matrix runs with a one-rung ladder (`LADDER`), so most sources
(256x144) come out as one 96p rendition; level, rate and aspect checks work the same at any size.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import imageio_ffmpeg

LADDER = "96"
SIZE = "256x144"
NO_VIDEO_TRACK = "The file has no video track"


@dataclass(frozen=True)
class Kind:
    name: str
    suffix: str
    make: Callable[[Path], None]
    status: str = "ready"
    error: str | None = None
    """For a failed one: how its message starts."""
    size: tuple[int, int] | None = (256, 144)
    """Display size the API must report."""
    duration: float = 1.0
    fps: float | None = 25.0
    """The FRAME-RATE the master playlist must declare (and the renditions really have)."""
    audio: bool = True
    hdr: bool = False
    needs_encoder: str | None = None
    ladder: str = LADDER


def ffmpeg_exe() -> str:
    """The static ffmpeg of the imageio-ffmpeg wheel, always: the samples need a recent one
    (`-display_rotation`, `-fps_mode`), whatever the machine has installed."""
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def _ff(*args: str) -> None:
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    subprocess.run(cmd, check=True, timeout=180)


@cache
def encoders() -> frozenset[str]:
    out = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True
    ).stdout
    return frozenset(
        line.split()[1]
        for line in out.splitlines()
        if line.startswith(" V") or line.startswith(" A")
    )


def _video(
    seconds: float = 1.0, *, size: str = SIZE, rate: str = "25", src: str = "testsrc2"
) -> list[str]:
    return ["-f", "lavfi", "-i", f"{src}=size={size}:rate={rate}:duration={seconds}"]


def _tone(seconds: float = 1.0, freq: int = 440) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=48000:duration={seconds}"]


X264 = ["-c:v", "libx264", "-preset", "ultrafast"]
AAC = ["-c:a", "aac", "-b:a", "64k"]


def _plain(path: Path) -> None:
    _ff(*_video(), *_tone(), *X264, "-pix_fmt", "yuv420p", *AAC, "-shortest", str(path))


def _portrait(path: Path) -> None:
    _ff(
        *_video(size="144x256", rate="30"),
        *_tone(),
        *X264,
        "-pix_fmt",
        "yuv420p",
        *AAC,
        "-shortest",
        str(path),
    )


def _rotated(path: Path) -> None:
    # A phone records landscape pixels and a display matrix saying "turn 90 degrees".
    flat = path.with_suffix(".flat.mp4")
    _ff(*_video(rate="30"), *_tone(), *X264, "-pix_fmt", "yuv420p", *AAC, "-shortest", str(flat))
    _ff("-display_rotation", "90", "-i", str(flat), "-c", "copy", str(path))
    flat.unlink()


def _hevc(path: Path) -> None:
    _ff(
        *_video(),
        *_tone(),
        "-c:v",
        "libx265",
        "-preset",
        "ultrafast",
        "-x265-params",
        "log-level=error",
        "-tag:v",
        "hvc1",
        "-pix_fmt",
        "yuv420p",
        *AAC,
        "-shortest",
        str(path),
    )


def _vp9(path: Path) -> None:
    _ff(
        *_video(),
        *_tone(),
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-c:a",
        "libopus",
        "-shortest",
        str(path),
    )


def _av1(path: Path) -> None:
    _ff(
        *_video(),
        *_tone(),
        "-c:v",
        "libsvtav1",
        "-preset",
        "12",
        "-svtav1-params",
        "lp=1",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "libopus",
        "-shortest",
        str(path),
    )


def _ten_bit(path: Path) -> None:
    _ff(*_video(), *_tone(), *X264, "-pix_fmt", "yuv420p10le", *AAC, "-shortest", str(path))


def _four_four_four(path: Path) -> None:
    _ff(*_video(), *_tone(), *X264, "-pix_fmt", "yuv444p", *AAC, "-shortest", str(path))


def _mjpeg_avi(path: Path) -> None:
    _ff(
        *_video(),
        *_tone(),
        "-c:v",
        "mjpeg",
        "-q:v",
        "5",
        "-pix_fmt",
        "yuvj420p",
        "-c:a",
        "pcm_s16le",
        "-shortest",
        str(path),
    )


def _mov_pcm(path: Path) -> None:
    _ff(
        *_video(),
        *_tone(),
        *X264,
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "pcm_s16le",
        "-shortest",
        str(path),
    )


def _two_audio_tracks(path: Path) -> None:
    # First track silent (commentary off), second a tone flagged default: the second is meant.
    _ff(
        *_video(),
        "-f",
        "lavfi",
        "-i",
        "anullsrc=r=48000:cl=stereo",
        *_tone(),
        "-map",
        "0:v",
        "-map",
        "1:a",
        "-map",
        "2:a",
        "-t",
        "1",
        *X264,
        "-pix_fmt",
        "yuv420p",
        *AAC,
        "-disposition:a:0",
        "0",
        "-disposition:a:1",
        "default",
        str(path),
    )


def _rate(rate: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        _ff(
            *_video(rate=rate), *_tone(), *X264, "-pix_fmt", "yuv420p", *AAC, "-shortest", str(path)
        )

    return make


def _odd(path: Path) -> None:
    _ff(
        *_video(),
        *_tone(),
        "-vf",
        "scale=255:143,setsar=1",  # testsrc2 only makes even sizes
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-cpu-used",
        "8",
        "-c:a",
        "libopus",
        "-shortest",
        str(path),
    )


def _tiny(path: Path) -> None:
    _ff(*_video(size="32x24"), *_tone(), *X264, "-pix_fmt", "yuv420p", *AAC, "-shortest", str(path))


def _short(path: Path) -> None:
    _ff(*_video(0.4), *_tone(0.4), *X264, "-pix_fmt", "yuv420p", *AAC, "-shortest", str(path))


# Variable frame rate, as phones and screen recorders write it: timestamps kept as they are.
_VFR = ["-fps_mode", "passthrough", "-enc_time_base", "1/600", "-video_track_timescale", "600"]


def _vfr_24_to_60(path: Path, size: str = SIZE) -> None:
    _ff(
        *_video(rate="24", size=size),
        *_video(rate="60", size=size),
        *_tone(2.0),
        "-filter_complex",
        "[0:v][1:v]concat=n=2:v=1:a=0,settb=1/600[v]",
        "-map",
        "[v]",
        "-map",
        "2:a",
        *X264,
        "-pix_fmt",
        "yuv420p",
        *_VFR,
        *AAC,
        str(path),
    )


def _vfr_24_to_60_hd(path: Path) -> None:
    _vfr_24_to_60(path, size="1280x720")


def _vfr_24_gap_60(path: Path) -> None:
    # 1 s at 24 fps, no frame for 0.5 s, 1 s at 60 fps.
    _ff(
        *_video(rate="24"),
        *_video(rate="60"),
        *_tone(2.5),
        "-filter_complex",
        "[0:v][1:v]concat=n=2:v=1:a=0,settb=1/600,setpts='if(gte(T,1),PTS+0.5/TB,PTS)'[v]",
        "-map",
        "[v]",
        "-map",
        "2:a",
        *X264,
        "-pix_fmt",
        "yuv420p",
        *_VFR,
        *AAC,
        str(path),
    )


def _dropped_frames(path: Path) -> None:
    # 30 fps with about 40% of the frames missing (a phone under load): the average is ~18.
    _ff(
        *_video(2.0, rate="30"),
        *_tone(2.0),
        "-vf",
        "select='not(between(mod(n,5),1,2))'",
        *X264,
        "-pix_fmt",
        "yuv420p",
        *_VFR,
        *AAC,
        str(path),
    )


def _anamorphic(container: str) -> Callable[[Path], None]:
    # 216x144 stored, shown 16:9 (SAR 32:27, as DV NTSC widescreen): 256x144 on screen.
    def make(path: Path) -> None:
        if container == "webm":
            video = ["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8"]
            audio = ["-c:a", "libopus"]
        else:
            video, audio = [*X264, "-pix_fmt", "yuv420p"], AAC
        _ff(
            *_video(size="216x144"),
            *_tone(),
            "-vf",
            "setsar=32/27",
            *video,
            *audio,
            "-shortest",
            str(path),
        )

    return make


def _anamorphic_container_only(path: Path) -> None:
    # Square pixels in the H.264 stream, 16:9 stated by the container only (as `mkvmerge
    # --aspect-ratio` or `ffmpeg -c copy -aspect` write it): ffmpeg prints `[SAR 1:1 DAR 3:2],
    # SAR 32:27 DAR 16:9`, and the container's word is the one players follow.
    square = path.with_suffix(".square.mp4")
    _ff(
        *_video(size="216x144"),
        *_tone(),
        *X264,
        "-pix_fmt",
        "yuv420p",
        *AAC,
        "-shortest",
        str(square),
    )
    _ff("-i", str(square), "-c", "copy", "-aspect", "16:9", str(path))
    square.unlink()


# 10-bit code values of HDR reference white (BT.2408: 203 nits; 58% PQ, 75% HLG), limited range.
HDR_WHITE = {"smpte2084": 572, "arib-std-b67": 721}


def _hdr(transfer: str) -> Callable[[Path], None]:
    # 10-bit HEVC tagged BT.2020 + PQ (HDR10) or HLG (phones): one flat, reddish colour at
    # reference-white brightness, so the conversion shows in the mean of each plane.
    def make(path: Path) -> None:
        paint = f"geq=lum={HDR_WHITE[transfer]}:cb=400:cr=640"
        tags = f"setparams=color_primaries=bt2020:color_trc={transfer}:colorspace=bt2020nc:range=tv"
        _ff(
            *_video(src="testsrc2"),
            *_tone(),
            "-vf",
            f"format=yuv420p10le,{paint},{tags}",
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error",
            "-tag:v",
            "hvc1",
            *AAC,
            "-shortest",
            str(path),
        )

    return make


def _m4a(path: Path) -> None:
    _ff(*_tone(), *AAC, str(path))


def _mp3(path: Path) -> None:
    # With cover art: a picture stream that is not a video track.
    cover = path.with_suffix(".jpg")
    _ff("-f", "lavfi", "-i", "testsrc2=size=64x64:duration=0.04", "-frames:v", "1", str(cover))
    _ff(
        *_tone(),
        "-i",
        str(cover),
        "-map",
        "0:a",
        "-map",
        "1:v",
        "-c:a",
        "libmp3lame",
        "-c:v",
        "copy",
        "-disposition:v",
        "attached_pic",
        "-id3v2_version",
        "3",
        str(path),
    )
    cover.unlink()


def _renamed_m4a(path: Path) -> None:
    _ff(*_tone(), *AAC, "-f", "mp4", str(path))


def _silent(path: Path) -> None:
    _ff(*_video(), *X264, "-pix_fmt", "yuv420p", str(path))


def _mpeg2_ts(path: Path) -> None:
    # A broadcast recording: MPEG-2 video and MP2 audio in MPEG-TS, timestamps starting at 1.4 s.
    _ff(
        *_video(),
        *_tone(),
        "-c:v",
        "mpeg2video",
        "-q:v",
        "4",
        "-c:a",
        "mp2",
        "-shortest",
        str(path),
    )


def _open_gop(path: Path) -> None:
    _ff(
        *_video(),
        *_tone(),
        *X264,
        "-x264-params",
        "open_gop=1:keyint=12:bframes=3",
        "-pix_fmt",
        "yuv420p",
        *AAC,
        "-shortest",
        str(path),
    )


def _interlaced(path: Path) -> None:
    _ff(
        *_video(),
        *_tone(),
        *X264,
        "-flags",
        "+ilme+ildct",
        "-x264-params",
        "tff=1",
        "-pix_fmt",
        "yuv420p",
        *AAC,
        "-shortest",
        str(path),
    )


KINDS: tuple[Kind, ...] = (
    Kind("h264-aac-mp4", ".mp4", _plain),
    Kind("portrait-phone", ".mp4", _portrait, size=(144, 256), fps=30),
    Kind("rotated-phone", ".mp4", _rotated, size=(144, 256), fps=30),
    Kind("hevc-mp4", ".mp4", _hevc),
    Kind("vp9-webm", ".webm", _vp9),
    Kind("av1-mp4", ".mp4", _av1, needs_encoder="libsvtav1"),
    Kind("h264-10bit", ".mp4", _ten_bit),
    Kind("h264-444", ".mp4", _four_four_four),
    Kind("mjpeg-avi", ".avi", _mjpeg_avi),
    Kind("mov-pcm", ".mov", _mov_pcm),
    Kind("mkv-two-audio-default-second", ".mkv", _two_audio_tracks),
    Kind("59.94fps", ".mp4", _rate("60000/1001"), fps=59.94),
    Kind("120fps", ".mp4", _rate("120"), fps=60),
    Kind("odd-size-vp9", ".webm", _odd, size=(255, 143)),
    Kind("tiny-32x24", ".mp4", _tiny, size=(32, 24)),
    Kind("short-0.4s", ".mp4", _short, duration=0.4),
    Kind("vfr-24-to-60", ".mp4", _vfr_24_to_60, duration=2.0, fps=60),
    # The issue's own case at its size: 720p needs level 3.2 at 60 fps (3.1 at the average 42).
    Kind(
        "vfr-24-to-60-720p",
        ".mp4",
        _vfr_24_to_60_hd,
        size=(1280, 720),
        duration=2.0,
        fps=60,
        ladder="720",
    ),
    Kind("vfr-24-gap-60", ".mp4", _vfr_24_gap_60, duration=2.5, fps=60),
    Kind("30fps-dropped-frames", ".mp4", _dropped_frames, duration=2.0, fps=30),
    Kind("anamorphic-webm", ".webm", _anamorphic("webm")),
    Kind("anamorphic-mkv", ".mkv", _anamorphic("mkv")),
    Kind("anamorphic-mp4", ".mp4", _anamorphic("mp4")),
    Kind("anamorphic-mkv-container-only", ".mkv", _anamorphic_container_only),
    Kind("hdr-hlg", ".mp4", _hdr("arib-std-b67"), hdr=True),
    Kind("hdr-pq", ".mp4", _hdr("smpte2084"), hdr=True),
    Kind("audio-only-m4a", ".m4a", _m4a, status="failed", error=NO_VIDEO_TRACK, size=None),
    Kind("audio-only-mp3-cover", ".mp3", _mp3, status="failed", error=NO_VIDEO_TRACK, size=None),
    Kind(
        "audio-only-renamed-mp4",
        ".mp4",
        _renamed_m4a,
        status="failed",
        error=NO_VIDEO_TRACK,
        size=None,
    ),
    Kind("silent-video", ".mp4", _silent, audio=False),
    Kind("mpeg2-ts", ".ts", _mpeg2_ts),
    Kind("open-gop", ".mp4", _open_gop),
    Kind("interlaced", ".mp4", _interlaced),
)
