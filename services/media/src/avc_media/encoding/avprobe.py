"""`python -I -m avc_media.encoding.avprobe [--max-pixels N] [--scan-seconds S]
[--scan-budget S] FILE`: the
facts of an upload as JSON, read through PyAV (FFmpeg's libraries, bundled in its wheel).

It prints what `ffprobe -print_format json -show_format -show_streams` would (`format`,
`streams`, with the same field names and colour names), plus `frame_timing`: the real frame
rate of the first video stream, told from its packets' timestamps over its first
`--scan-seconds` (see `framerate.sustained_rate`), and how many it saw. The scan stops early
after `--scan-budget` seconds of wall time (a huge file on slow storage) or at a damaged
packet, and tells the rate from what it read: the frame rate is a hint, not a verdict. The
first video frame is decoded too: its rotation (display matrix), colour properties and field
order are the ones ffmpeg will see when encoding.

It runs as a child process (`probe.probe_media` starts it through `ffmpeg.run`): the demuxers
parse untrusted bytes, so they do it under the same time limit and resource limits as ffmpeg,
never inside the worker. Reads are limited to local files and the containers of
`formats.INPUT_FORMATS`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from typing import Any, Final

import av
import av.error
import av.logging
from av.container import InputContainer
from av.stream import Disposition
from av.video.stream import VideoStream

from avc_media.encoding.formats import INPUT_FORMATS
from avc_media.encoding.framerate import sustained_rate

# FFmpeg's numeric colour enums (libavutil/pixfmt.h) by the names ffprobe prints.
PRIMARIES: Final = {
    1: "bt709",
    4: "bt470m",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "film",
    9: "bt2020",
    10: "smpte428",
    11: "smpte431",
    12: "smpte432",
    22: "jedec-p22",
}
TRANSFERS: Final = {
    1: "bt709",
    4: "gamma22",
    5: "gamma28",
    6: "smpte170m",
    7: "smpte240m",
    8: "linear",
    9: "log100",
    10: "log316",
    11: "iec61966-2-4",
    12: "bt1361e",
    13: "iec61966-2-1",
    14: "bt2020-10",
    15: "bt2020-12",
    16: "smpte2084",
    17: "smpte428",
    18: "arib-std-b67",
}
MATRICES: Final = {
    0: "gbr",
    1: "bt709",
    4: "fcc",
    5: "bt470bg",
    6: "smpte170m",
    7: "smpte240m",
    8: "ycgco",
    9: "bt2020nc",
    10: "bt2020c",
    11: "smpte2085",
    12: "chroma-derived-nc",
    13: "chroma-derived-c",
    14: "ictcp",
}
RANGES: Final = {1: "tv", 2: "pc"}
FIELD_ORDERS: Final = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
_DECODE_PACKETS: Final = 64
"""Packets fed to the decoder at most to get the first frame (decoders with delay)."""


def _ratio(value: Fraction | None) -> str:
    return f"{value.numerator}/{value.denominator}" if value else "0/0"


def _colour(value: int, names: dict[int, str]) -> str:
    return names.get(value, "unknown")


def _stream(stream: Any) -> dict[str, Any]:
    context = stream.codec_context
    disposition = int(stream.disposition)
    out: dict[str, Any] = {
        "index": stream.index,
        "codec_type": stream.type,
        "codec_name": context.name if context is not None else "",
        "disposition": {
            "default": int(bool(disposition & Disposition.default)),
            "attached_pic": int(bool(disposition & Disposition.attached_pic)),
        },
        "tags": dict(stream.metadata),
    }
    if stream.type == "video":
        out |= {
            "width": context.width,
            "height": context.height,
            "sample_aspect_ratio": _ratio(stream.sample_aspect_ratio),
            "avg_frame_rate": _ratio(stream.average_rate),
            "r_frame_rate": _ratio(stream.base_rate),
            "pix_fmt": context.pix_fmt or "",
            "color_range": _colour(context.color_range, RANGES),
            "color_primaries": _colour(context.color_primaries, PRIMARIES),
            "color_transfer": _colour(context.color_trc, TRANSFERS),
            "color_space": _colour(context.colorspace, MATRICES),
            "field_order": FIELD_ORDERS.get(context.field_order, "unknown"),
        }
    elif stream.type == "audio":
        out |= {"channels": context.channels, "sample_rate": context.sample_rate}
    return out


def _rounded(rate: float | None) -> float | None:
    return round(rate, 6) if rate is not None else None


def _first_video(container: InputContainer) -> VideoStream | None:
    for stream in container.streams.video:
        if not int(stream.disposition) & Disposition.attached_pic and stream.codec_context.width:
            return stream
    return None


def _scan(
    container: InputContainer,
    video: VideoStream,
    facts: dict[str, Any],
    *,
    seconds: float,
    budget: float,
    max_pixels: int,
) -> list[float]:
    """Returns the packet timestamps of `video` over its first `seconds` (read within `budget`
    seconds); updates `facts` with what the first decoded frame says (rotation, colours,
    field order)."""
    deadline = time.monotonic() + budget
    base = video.time_base
    start: float | None = None
    times: list[float] = []
    decodable = video.codec_context.width * video.codec_context.height <= max_pixels
    fed = 0
    video.codec_context.thread_count = 1
    packets = container.demux(video)
    while time.monotonic() < deadline:
        try:
            packet = next(packets)
        except (StopIteration, av.error.FFmpegError):
            break
        if packet.pts is not None and base is not None:
            t = float(packet.pts * base)
            start = t if start is None else start
            if t - start > seconds:
                break
            times.append(t)
        if decodable and fed < _DECODE_PACKETS:
            fed += 1
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                frames = []
            if frames:
                frame = frames[0]
                facts["side_data_list"] = [{"rotation": frame.rotation}]
                facts["color_range"] = _colour(frame.color_range, RANGES)
                facts["color_primaries"] = _colour(frame.color_primaries, PRIMARIES)
                facts["color_transfer"] = _colour(frame.color_trc, TRANSFERS)
                facts["color_space"] = _colour(frame.colorspace, MATRICES)
                if frame.interlaced_frame:
                    facts["field_order"] = "tt"
                fed = _DECODE_PACKETS  # one frame is enough: demux only from here on
    return times


def probe(path: str, *, scan_seconds: float, scan_budget: float, max_pixels: int) -> dict[str, Any]:
    """Returns the facts of the file at `path` (see the module docstring)."""
    options = {"protocol_whitelist": "file", "format_whitelist": ",".join(INPUT_FORMATS)}
    with av.open(path, options=options) as container:
        assert isinstance(container, InputContainer)
        streams = [_stream(s) for s in container.streams]
        out: dict[str, Any] = {
            "format": {
                "format_name": container.format.name,
                "duration": container.duration / av.time_base
                if container.duration is not None
                else None,
            },
            "streams": streams,
            "frame_timing": None,
        }
        video = _first_video(container)
        if video is not None:
            facts = streams[video.index]
            times = _scan(
                container,
                video,
                facts,
                seconds=scan_seconds,
                budget=scan_budget,
                max_pixels=max_pixels,
            )
            out["frame_timing"] = {
                "sustained_rate": _rounded(sustained_rate(times)),
                "packets": len(times),
                "seconds": max(times) - min(times) if times else 0.0,
            }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="avprobe", description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--scan-seconds", type=float, default=300.0)
    parser.add_argument("--scan-budget", type=float, default=20.0)
    parser.add_argument("--max-pixels", type=int, default=3840 * 2160)
    args = parser.parse_args(argv)
    av.logging.set_level(None)
    try:
        facts = probe(
            args.path,
            scan_seconds=args.scan_seconds,
            scan_budget=args.scan_budget,
            max_pixels=args.max_pixels,
        )
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        print(json.dumps({"error": type(exc).__name__}))
        return 1
    json.dump(facts, sys.stdout, separators=(",", ":"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
