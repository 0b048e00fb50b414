"""ffmpeg command lines for the HLS ladder and the poster, and the master playlist.

One ffmpeg run decodes the source once and encodes every rung (`split` + `scale`), each rung
its own HLS output (`<rung>/index.m3u8` + `<rung>/seg_00000.ts`…): H.264 High (capped CRF:
`-crf` with `-maxrate`/`-bufsize`) at the plan's constant frame rate (the `fps` filter: frames
of a variable-rate source are repeated or dropped onto that grid), HDR sources tone-mapped to
SDR BT.709 (see `colour`), and stereo AAC from the plan's audio track, keyframes forced
every 2 s with scene-cut keyframes off so every rung cuts its segments at the same instants,
`-hls_time` 6 s (settable), VOD playlists with `#EXT-X-INDEPENDENT-SEGMENTS`.

The master playlist is written here, not by ffmpeg, from what was actually produced:
BANDWIDTH is the peak segment bitrate and AVERAGE-BANDWIDTH the mean (RFC 8216 §4.3.4.2),
RESOLUTION the rung's size, CODECS the profile/level each rung was encoded with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from avc_media.config import MediaSettings
from avc_media.encoding.formats import INPUT_GUARDS
from avc_media.encoding.framerate import rate_text
from avc_media.encoding.ladder import Rung
from avc_media.encoding.plan import EncodePlan
from avc_media.encoding.probe import MediaInfo

KEYFRAME_SECONDS: Final = 2
PLAYLIST: Final = "index.m3u8"
SEGMENT_PATTERN: Final = "seg_%05d.ts"
CRF: Final = 21


def encode_command(
    ffmpeg: str,
    source: Path,
    out_dir: Path,
    *,
    info: MediaInfo,
    plan: EncodePlan,
    settings: MediaSettings,
    pixel_cap: int,
) -> list[str]:
    """Returns the argv encoding `source` into one HLS rendition per rung under `out_dir`."""
    rungs = plan.rungs
    pre = "yadif=deint=interlaced," if info.interlaced else ""
    # The rate first: a 120 fps source is halved before the (costly) colour conversion.
    fps = f"fps={rate_text(plan.rate)},"
    colour = f"{plan.colour_filter}," if plan.colour_filter else ""
    labels = [f"s{i}" for i in range(len(rungs))]
    graph = [
        f"[0:V:0]{pre}{fps}{colour}split={len(rungs)}" + "".join(f"[{label}]" for label in labels)
    ]
    for i, rung in enumerate(rungs):
        graph.append(
            # Limited range always (full-range sources such as MJPEG too): what players expect.
            f"[s{i}]scale={rung.width}:{rung.height}:flags=bicubic:out_range=tv,setsar=1,"
            f"format=yuv420p[v{i}]"
        )
    # Input bounded by the duration cap: a header that lies about its length cannot make the
    # encode run on and on (the result is measured and checked afterwards).
    limit = f"{settings.max_duration_seconds + 1:.3f}"
    argv = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        *INPUT_GUARDS,
        "-max_pixels",
        str(pixel_cap),
        "-t",
        limit,
        "-i",
        str(source),
        "-filter_complex",
        ";".join(graph),
        "-progress",
        "pipe:1",
    ]
    threads = ["-threads", str(settings.ffmpeg_threads)] if settings.ffmpeg_threads else []
    for i, rung in enumerate(rungs):
        rung_dir = out_dir / rung.name
        argv += ["-map", f"[v{i}]"]
        if plan.audio_track is not None:
            argv += ["-map", f"0:a:{plan.audio_track}"]
        argv += [
            "-c:v",
            "libx264",
            "-preset",
            settings.x264_preset,
            "-profile:v",
            "high",
            "-level:v",
            rung.level_text,
            "-crf",
            str(CRF),
            "-maxrate",
            f"{rung.video_kbps}k",
            "-bufsize",
            f"{rung.video_kbps * 2}k",
            "-force_key_frames",
            f"expr:gte(t,n_forced*{KEYFRAME_SECONDS})",
            "-sc_threshold",
            "0",
            *plan.colour_tags,
            *threads,
        ]
        if plan.audio_track is not None:
            argv += ["-c:a", "aac", "-b:a", f"{rung.audio_kbps}k", "-ac", "2", "-ar", "48000"]
        argv += [
            "-f",
            "hls",
            "-hls_time",
            str(settings.segment_seconds),
            "-hls_playlist_type",
            "vod",
            "-hls_flags",
            "independent_segments",
            "-hls_segment_type",
            "mpegts",
            "-hls_segment_filename",
            str(rung_dir / SEGMENT_PATTERN),
            str(rung_dir / PLAYLIST),
        ]
    return argv


def poster_time(duration: float | None) -> float:
    """Returns where the poster frame is taken: 10% in, at most 5 s."""
    if not duration or duration <= 0:
        return 0.0
    return round(min(5.0, duration * 0.1), 3)


def thumbnail_command(
    ffmpeg: str,
    source: Path,
    target: Path,
    *,
    info: MediaInfo,
    plan: EncodePlan,
    rung: Rung,
    pixel_cap: int,
    at: float | None = None,
) -> list[str]:
    """Returns the argv writing one JPEG poster frame of `source` at the size of `rung`, taken
    at `at` seconds (default `poster_time`), with the colour conversion of the renditions."""
    seek = poster_time(info.duration_seconds) if at is None else at
    colour = f"{plan.colour_filter}," if plan.colour_filter else ""
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        *INPUT_GUARDS,
        "-max_pixels",
        str(pixel_cap),
        "-ss",
        f"{seek:.3f}",
        "-i",
        str(source),
        "-map",
        "0:V:0",
        "-frames:v",
        "1",
        "-vf",
        f"{colour}scale={rung.width}:{rung.height}:flags=bicubic,setsar=1",
        "-q:v",
        "3",
        "-f",
        "image2",
        "-update",
        "1",
        "-y",
        str(target),
    ]


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    size: int


@dataclass(frozen=True)
class RenditionResult:
    rung: Rung
    segments: list[Segment]
    playlist_size: int

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    @property
    def media_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    @property
    def average_bps(self) -> int:
        return math.ceil(self.media_bytes * 8 / self.duration) if self.duration > 0 else 0

    @property
    def peak_bps(self) -> int:
        # Very short segments (the tail) are left out unless there is nothing else.
        rates = [s.size * 8 / s.duration for s in self.segments if s.duration >= 1.0]
        if not rates:
            rates = [s.size * 8 / s.duration for s in self.segments if s.duration > 0]
        return math.ceil(max(rates)) if rates else self.average_bps


class PlaylistError(Exception):
    """A media playlist ffmpeg wrote does not look like one."""


def read_rendition(rung: Rung, out_dir: Path) -> RenditionResult:
    """Returns the segments (with sizes) of the rendition ffmpeg wrote for `rung`."""
    rung_dir = out_dir / rung.name
    playlist = rung_dir / PLAYLIST
    text = playlist.read_text(encoding="utf-8")
    if not text.startswith("#EXTM3U") or "#EXT-X-ENDLIST" not in text:
        raise PlaylistError(f"{rung.name}: incomplete playlist")
    segments: list[Segment] = []
    duration: float | None = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",", 1)[0])
        elif line and not line.startswith("#"):
            if duration is None or "/" in line or line.startswith("."):
                raise PlaylistError(f"{rung.name}: unexpected entry {line!r}")
            segments.append(Segment(line, duration, (rung_dir / line).stat().st_size))
            duration = None
    if not segments:
        raise PlaylistError(f"{rung.name}: no segments")
    return RenditionResult(rung=rung, segments=segments, playlist_size=playlist.stat().st_size)


def master_playlist(results: list[RenditionResult], *, audio: bool, fps: float | None) -> str:
    """Returns the master playlist listing every rendition, highest first; `fps` is the rate
    the renditions were encoded at."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for result in results:
        rung = result.rung
        attributes = [
            f"BANDWIDTH={max(result.peak_bps, result.average_bps)}",
            f"AVERAGE-BANDWIDTH={result.average_bps}",
            f"RESOLUTION={rung.width}x{rung.height}",
            f'CODECS="{rung.codecs(audio=audio)}"',
        ]
        if fps is not None and fps > 0:
            attributes.append(f"FRAME-RATE={fps:.3f}")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(f"{rung.name}/{PLAYLIST}")
    return "\n".join(lines) + "\n"
