"""What an uploaded file is, and whether it is a video this platform accepts.

Probing runs on untrusted input with the guards of `formats.INPUT_GUARDS` (local file only,
known containers only), a decoder pixel cap, and a time limit, in two child processes:

- `avprobe` (PyAV: FFmpeg's libraries, bundled in its wheel) reports the streams as structured
  data, in ffprobe's JSON shape: sizes, sample aspect ratio, rotation, colour, field order,
  dispositions, and the real frame rate told from the first video stream's timestamps
  (`framerate.sustained_rate`), so no log text is parsed. It costs about 0.3 s more than the
  regexes over `ffmpeg -i` it replaced (median 0.33-0.37 s against 0.06 s a probe over the 26
  video clips of tests/media/input_kinds.py, most of it the interpreter and PyAV starting);
  the encode that follows takes seconds to hours.
- the ffmpeg that will encode then decodes the first frame of the first real video stream
  (`-map 0:V:0 -frames:v 1 -f null -`, counting frames with `-progress pipe:1`): a file is only
  accepted when a frame actually decodes. When the container does not state a duration, a
  stream-copy pass (`-c copy -f null -`) measures it.

A file with sound and no picture (M4A, MP3, whatever its name) is told so: "no video track".
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from avc_common.logging import get_logger
from avc_media.config import MediaSettings
from avc_media.encoding.colour import Colour
from avc_media.encoding.ffmpeg import Binaries, FfmpegTimeout, RunResult, run
from avc_media.encoding.formats import INPUT_GUARDS

log = get_logger(__name__)

SCAN_SECONDS: Final = 300.0
"""How much of the video's timeline the frame rate is told from (read without decoding)."""


class MediaRejected(Exception):
    """The upload cannot become a video; `code` and `message` are shown to its owner."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid_media() -> MediaRejected:
    return MediaRejected(
        "invalid_media",
        "The file is not a playable video. Upload a video file such as MP4, MOV, MKV or WebM.",
    )


def no_video_track() -> MediaRejected:
    return MediaRejected(
        "invalid_media",
        "The file has no video track: it holds sound only. "
        "Upload a video file such as MP4, MOV, MKV or WebM.",
    )


@dataclass(frozen=True)
class MediaInfo:
    container: str
    duration_seconds: float | None
    coded_width: int
    coded_height: int
    width: int
    """Display width: sample aspect ratio and rotation applied (what a viewer sees)."""
    height: int
    fps: float | None
    """The real frame rate (the fastest one the video keeps up), else the average one."""
    video_codec: str
    interlaced: bool
    has_audio: bool
    rotation: int = 0
    average_fps: float | None = None
    """The container's average rate (frames / duration): below `fps` for VFR sources."""
    audio_track: int = 0
    """Which audio stream is encoded (counted among audio streams, as ffmpeg's `0:a:N`)."""
    audio_tracks: int = 0
    subtitle_tracks: int = 0
    pix_fmt: str = ""
    colour: Colour = field(default_factory=Colour)


# ---- parsing -------------------------------------------------------------------------------


def _display(width: int, height: int, sar: float, rotation: int) -> tuple[int, int]:
    if sar > 0 and not math.isclose(sar, 1.0):
        width = round(width * sar)
    if rotation % 180:
        width, height = height, width
    return width, height


def _normalize_rotation(deg: float) -> int:
    return round(deg / 90) * 90 % 360


def _ratio(text: Any) -> float | None:
    if not isinstance(text, str) or ("/" not in text and ":" not in text):
        return None
    num, _, den = text.replace(":", "/").partition("/")
    try:
        n, d = float(num), float(den)
    except ValueError:
        return None
    return n / d if d else None


def _flag(stream: dict[str, Any], name: str) -> bool:
    return bool((stream.get("disposition") or {}).get(name))


def _audio_track(audio: list[dict[str, Any]]) -> int:
    """Returns the audio stream to encode: the first one flagged default, else the first."""
    return next((i for i, s in enumerate(audio) if _flag(s, "default")), 0)


def is_sound_only(data: dict[str, Any]) -> bool:
    """True when the probe found audio streams and no picture (cover art does not count)."""
    streams = data.get("streams") or []
    return parse_ffprobe_json(data) is None and any(s.get("codec_type") == "audio" for s in streams)


def parse_ffprobe_json(data: dict[str, Any]) -> MediaInfo | None:
    """Returns what `ffprobe -show_format -show_streams -print_format json` (or `avprobe`,
    which prints the same shape) says; None when there is no usable video stream."""
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            and not _flag(s, "attached_pic")
            and int(s.get("width") or 0) > 0
            and int(s.get("height") or 0) > 0
        ),
        None,
    )
    if video is None:
        return None
    rotation = 0.0
    for side in video.get("side_data_list") or []:
        if "rotation" in side:
            rotation = float(side["rotation"])
    if not rotation and (video.get("tags") or {}).get("rotate"):
        rotation = float(video["tags"]["rotate"])
    rot = _normalize_rotation(rotation)
    sar = _ratio(video.get("sample_aspect_ratio")) or 1.0
    w, h = int(video["width"]), int(video["height"])
    width, height = _display(w, h, sar, rot)
    average = _ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate"))
    timing = data.get("frame_timing") or {}
    measured = timing.get("sustained_rate")
    fps = float(measured) if isinstance(measured, int | float) and measured > 0 else average
    try:
        duration: float | None = float(fmt["duration"])
    except (KeyError, TypeError, ValueError):
        duration = None
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    return MediaInfo(
        container=str(fmt.get("format_name", "")),
        duration_seconds=duration,
        coded_width=w,
        coded_height=h,
        width=width,
        height=height,
        fps=fps,
        average_fps=average,
        video_codec=str(video.get("codec_name", "")),
        interlaced=video.get("field_order") in ("tt", "bb", "tb", "bt"),
        has_audio=bool(audio),
        audio_track=_audio_track(audio),
        audio_tracks=len(audio),
        subtitle_tracks=sum(1 for s in streams if s.get("codec_type") == "subtitle"),
        rotation=rot,
        pix_fmt=str(video.get("pix_fmt") or ""),
        colour=Colour(
            primaries=str(video.get("color_primaries") or "unknown"),
            transfer=str(video.get("color_transfer") or "unknown"),
            matrix=str(video.get("color_space") or "unknown"),
            range=str(video.get("color_range") or "unknown"),
        ),
    )


def progress_values(stdout: bytes) -> dict[str, str]:
    """Returns the last value of each key in ffmpeg's `-progress` output."""
    values: dict[str, str] = {}
    for line in stdout.decode(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


# ---- probing -------------------------------------------------------------------------------


def pixel_cap(settings: MediaSettings) -> int:
    """Returns the largest frame (in pixels) a decoder is allowed to allocate."""
    return settings.max_width * settings.max_height


def avprobe_command(path: Path, settings: MediaSettings) -> list[str]:
    """Returns the argv of the `avprobe` child for `path` (this interpreter, isolated mode)."""
    return [
        sys.executable,
        "-I",
        "-m",
        "avc_media.encoding.avprobe",
        "--scan-seconds",
        f"{SCAN_SECONDS:g}",
        # Leaves most of the probe's time limit to opening the file and the decode check.
        "--scan-budget",
        f"{settings.probe_timeout_seconds / 3:g}",
        "--max-pixels",
        str(pixel_cap(settings)),
        str(path),
    ]


async def read_facts(path: Path, *, settings: MediaSettings) -> dict[str, Any]:
    """Returns what `avprobe` says of the file (ffprobe's JSON shape); raises MediaRejected
    when the file cannot be read, RuntimeError when the child itself failed (killed, or a
    broken installation: not the file's fault, so the encode is retried)."""
    result = await _guarded(avprobe_command(path, settings), limit=settings.probe_timeout_seconds)
    try:
        data = json.loads(result.stdout)
    except ValueError:
        data = None
    if not isinstance(data, dict) or result.killed_by_signal:
        log.warning("avprobe_failed", returncode=result.returncode, output=result.stderr[-2000:])
        raise RuntimeError(f"avprobe exited with {result.returncode} and no answer")
    if result.returncode != 0 or "error" in data:
        log.info("probe_unreadable", error=data.get("error"))
        raise invalid_media()
    return data


async def probe_media(binaries: Binaries, path: Path, *, settings: MediaSettings) -> MediaInfo:
    """Returns the facts of a playable video; raises MediaRejected for anything else."""
    timeout = settings.probe_timeout_seconds
    data = await read_facts(path, settings=settings)
    info = parse_ffprobe_json(data)
    if info is None:
        raise no_video_track() if is_sound_only(data) else invalid_media()
    # Limits before the decode verdict: a frame too large for the decoder's pixel cap is
    # "too large", not "not a video".
    check_limits(info, settings)
    decode = await _guarded(
        [
            binaries.ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-loglevel",
            "error",
            *INPUT_GUARDS,
            "-max_pixels",
            str(pixel_cap(settings)),
            "-i",
            str(path),
            "-map",
            "0:V:0",
            "-frames:v",
            "1",
            "-f",
            "null",
            "-progress",
            "pipe:1",
            "-",
        ],
        limit=timeout,
    )
    frames = progress_values(decode.stdout).get("frame", "0")
    if decode.returncode != 0 or not frames.isdigit() or int(frames) < 1:
        log.info(
            "probe_no_decodable_frame", returncode=decode.returncode, output=decode.stderr[-2000:]
        )
        raise invalid_media()
    if info.duration_seconds is None or info.duration_seconds <= 0:
        info = replace(info, duration_seconds=await _measure_duration(binaries, path, settings))
        check_limits(info, settings)
    return info


async def _measure_duration(binaries: Binaries, path: Path, settings: MediaSettings) -> float:
    result = await _guarded(
        [
            binaries.ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-loglevel",
            "error",
            *INPUT_GUARDS,
            "-i",
            str(path),
            "-map",
            "0:V:0",
            "-c",
            "copy",
            "-f",
            "null",
            "-progress",
            "pipe:1",
            "-",
        ],
        limit=settings.probe_timeout_seconds,
    )
    out_time = progress_values(result.stdout).get("out_time_us", "")
    if result.returncode != 0 or not out_time.lstrip("-").isdigit() or int(out_time) <= 0:
        raise invalid_media()
    return int(out_time) / 1_000_000


async def _guarded(argv: list[str], *, limit: float) -> RunResult:
    try:
        return await run(argv, limit=limit)
    except FfmpegTimeout as exc:
        log.warning("probe_timeout", limit=limit, output=exc.output[-2000:])
        raise MediaRejected(
            "invalid_media",
            "The file could not be read in time; it may be damaged. "
            "Re-export it as MP4 (H.264/AAC) and upload it again.",
        ) from None


def _clock(seconds: float) -> str:
    total = math.ceil(seconds)
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def check_limits(info: MediaInfo, settings: MediaSettings) -> None:
    """Raises MediaRejected when the video is longer or larger than this installation takes."""
    cap = settings.max_duration_seconds
    if info.duration_seconds is not None and info.duration_seconds > cap:
        raise MediaRejected(
            "duration_exceeded",
            f"The video is {_clock(info.duration_seconds)} long; the limit is {_clock(cap)}. "
            "Trim it and upload it again.",
        )
    long_side, short_side = max(info.width, info.height), min(info.width, info.height)
    if long_side > settings.max_width or short_side > settings.max_height:
        raise MediaRejected(
            "resolution_exceeded",
            f"The video is {info.width}x{info.height}; the largest accepted size is "
            f"{settings.max_width}x{settings.max_height} (either orientation). "
            "Scale it down and upload it again.",
        )
