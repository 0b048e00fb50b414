"""What an uploaded file is, and whether it is a video this platform accepts.

Probing runs on untrusted input with the guards of `ffmpeg.INPUT_GUARDS` (local file only,
known containers only), a decoder pixel cap, and a time limit. Two ways, same result:

- with a system **ffprobe**: `ffprobe -print_format json -show_format -show_streams`;
- without one (the imageio-ffmpeg wheel ships ffmpeg only): `ffmpeg -i FILE` prints the same
  facts in its input dump on stderr (`Input #0, mov,mp4,…`, `Duration: 00:00:10.00`,
  `Stream #0:0: Video: h264 …, 1280x720 [SAR 1:1 DAR 16:9], 25 fps`, side data such as
  `Display Matrix: rotation of -90.00 degrees`), which `parse_ffmpeg_dump` reads.

Either way ffmpeg then decodes the first frame of the first real video stream (`-map 0:V:0
-frames:v 1 -f null -`, counting frames with `-progress pipe:1`), which without ffprobe is the
very same run: a file is only accepted when a frame actually decodes. When the container does
not state a duration, a stream-copy pass (`-c copy -f null -`) measures it.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from avc_common.logging import get_logger
from avc_media.encoding.ffmpeg import INPUT_GUARDS, Binaries, FfmpegTimeout, RunResult, run
from avc_media.settings import MediaSettings

log = get_logger(__name__)


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
    video_codec: str
    interlaced: bool
    has_audio: bool
    rotation: int = 0


# ---- parsing -------------------------------------------------------------------------------

_INPUT: Final = re.compile(r"^Input #0, (?P<fmt>.+?), from ")
_DURATION: Final = re.compile(r"Duration: (?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)")
_STREAM: Final = re.compile(
    r"^\s*Stream #0:\d+(?:\[[^\]]*\])?(?:\([^)]*\))?: (?P<kind>\w+): (?P<desc>.*)$"
)
_SIZE: Final = re.compile(r"(?<![\dA-Za-z])(?P<w>\d{1,5})x(?P<h>\d{1,5})(?![\dA-Za-z])")
_SAR: Final = re.compile(r"\[SAR (?P<n>\d+):(?P<d>\d+) DAR")
_FPS: Final = re.compile(r"(?P<v>\d+(?:\.\d+)?) fps")
_TBR: Final = re.compile(r"(?P<v>\d+(?:\.\d+)?) tbr")
_ROTATION: Final = re.compile(r"rotation of (?P<deg>-?\d+(?:\.\d+)?) degrees", re.IGNORECASE)
_INTERLACED: Final = re.compile(r"\b(?:top|bottom)(?: coded)? first\b")


def _display(width: int, height: int, sar: float, rotation: int) -> tuple[int, int]:
    if sar > 0 and not math.isclose(sar, 1.0):
        width = round(width * sar)
    if rotation % 180:
        width, height = height, width
    return width, height


def _normalize_rotation(deg: float) -> int:
    return round(deg / 90) * 90 % 360


def parse_ffmpeg_dump(stderr: str) -> MediaInfo | None:
    """Returns what ffmpeg's input dump says about the file (None: no usable video stream)."""
    container = ""
    duration: float | None = None
    video: dict[str, Any] | None = None
    has_audio = False
    in_input = False
    current_is_video = False
    for line in stderr.splitlines():
        if match := _INPUT.match(line):
            container = match.group("fmt")
            in_input = True
            continue
        if not in_input:
            continue
        if line.startswith(("Stream mapping", "Output #")):
            break
        if line.startswith("["):
            continue  # a log line of some component, not part of the dump
        if match := _DURATION.search(line):
            h, m, s = match.group("h", "m", "s")
            duration = int(h) * 3600 + int(m) * 60 + float(s)
            continue
        if match := _STREAM.match(line):
            kind, desc = match.group("kind", "desc")
            current_is_video = False
            if kind == "Audio":
                has_audio = True
            elif kind == "Video" and video is None and "(attached pic)" not in desc:
                size = _SIZE.search(desc.split(",", 1)[1] if "," in desc else "")
                if size is None:
                    continue
                sar = _SAR.search(desc)
                fps = _FPS.search(desc) or _TBR.search(desc)
                video = {
                    "codec": desc.split(" ", 1)[0].rstrip(","),
                    "width": int(size.group("w")),
                    "height": int(size.group("h")),
                    "sar": int(sar.group("n")) / int(sar.group("d"))
                    if sar and int(sar.group("d"))
                    else 1.0,
                    "fps": float(fps.group("v")) if fps else None,
                    "interlaced": bool(_INTERLACED.search(desc)),
                    "rotation": 0,
                }
                current_is_video = True
            continue
        if current_is_video and video is not None and (match := _ROTATION.search(line)):
            video["rotation"] = _normalize_rotation(float(match.group("deg")))
    if video is None or video["width"] < 1 or video["height"] < 1:
        return None
    width, height = _display(video["width"], video["height"], video["sar"], video["rotation"])
    return MediaInfo(
        container=container,
        duration_seconds=duration,
        coded_width=video["width"],
        coded_height=video["height"],
        width=width,
        height=height,
        fps=video["fps"],
        video_codec=video["codec"],
        interlaced=video["interlaced"],
        has_audio=has_audio,
        rotation=video["rotation"],
    )


def _ratio(text: Any) -> float | None:
    if not isinstance(text, str) or ("/" not in text and ":" not in text):
        return None
    num, _, den = text.replace(":", "/").partition("/")
    try:
        n, d = float(num), float(den)
    except ValueError:
        return None
    return n / d if d else None


def parse_ffprobe_json(data: dict[str, Any]) -> MediaInfo | None:
    """Returns what `ffprobe -show_format -show_streams -print_format json` says."""
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    video = next(
        (
            s
            for s in streams
            if s.get("codec_type") == "video"
            and not (s.get("disposition") or {}).get("attached_pic")
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
    fps = _ratio(video.get("avg_frame_rate")) or _ratio(video.get("r_frame_rate"))
    try:
        duration: float | None = float(fmt["duration"])
    except (KeyError, TypeError, ValueError):
        duration = None
    return MediaInfo(
        container=str(fmt.get("format_name", "")),
        duration_seconds=duration,
        coded_width=w,
        coded_height=h,
        width=width,
        height=height,
        fps=fps,
        video_codec=str(video.get("codec_name", "")),
        interlaced=video.get("field_order") in ("tt", "bb", "tb", "bt"),
        has_audio=any(s.get("codec_type") == "audio" for s in streams),
        rotation=rot,
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
    return settings.media_max_width * settings.media_max_height


async def probe_media(binaries: Binaries, path: Path, *, settings: MediaSettings) -> MediaInfo:
    """Returns the facts of a playable video; raises MediaRejected for anything else."""
    timeout = settings.media_probe_timeout_seconds
    info: MediaInfo | None = None
    if binaries.ffprobe:
        result = await _guarded(
            [
                binaries.ffprobe,
                "-v",
                "error",
                *INPUT_GUARDS,
                "-print_format",
                "json",
                "-show_format",
                "-show_streams",
                str(path),
            ],
            limit=timeout,
        )
        if result.returncode != 0:
            raise invalid_media()
        try:
            info = parse_ffprobe_json(json.loads(result.stdout))
        except (ValueError, TypeError, KeyError):
            info = None
        if info is None:
            raise invalid_media()
        check_limits(info, settings)

    decode = await _guarded(
        [
            binaries.ffmpeg,
            "-hide_banner",
            "-nostdin",
            "-nostats",
            "-loglevel",
            "info",
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
    if info is None:
        info = parse_ffmpeg_dump(decode.stderr)
        if info is None:
            raise invalid_media()
        # Limits before the decode verdict: a frame too large for the decoder's pixel cap
        # is "too large", not "not a video".
        check_limits(info, settings)
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
        limit=settings.media_probe_timeout_seconds,
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
    cap = settings.media_max_duration_seconds
    if info.duration_seconds is not None and info.duration_seconds > cap:
        raise MediaRejected(
            "duration_exceeded",
            f"The video is {_clock(info.duration_seconds)} long; the limit is {_clock(cap)}. "
            "Trim it and upload it again.",
        )
    long_side, short_side = max(info.width, info.height), min(info.width, info.height)
    if long_side > settings.media_max_width or short_side > settings.media_max_height:
        raise MediaRejected(
            "resolution_exceeded",
            f"The video is {info.width}x{info.height}; the largest accepted size is "
            f"{settings.media_max_width}x{settings.media_max_height} (either orientation). "
            "Scale it down and upload it again.",
        )
