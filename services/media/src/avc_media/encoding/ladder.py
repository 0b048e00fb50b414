"""The rendition ladder: which sizes to encode a video to, at which bitrates and H.264 levels.

Rungs are named after their short side (`720p` is 1280x720 landscape or 720x1280 portrait), so
portrait videos get the same ladder. A rung is only made when the source is at least that big —
never upscaled; a source smaller than every rung gets one rung at its own size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

# Average target for 1280x720 at <= 30 fps (capped CRF: simple pictures use less).
_REFERENCE_KBPS: Final = 2800
_REFERENCE_PIXELS: Final = 1280 * 720

# H.264 levels (Table A-1): level_idc, MaxMBPS, MaxFS, MaxBR (kbit/s, Main; High is 1.25x).
# The low ones too: a small rendition declares the level it needs, so a player (and a test)
# can tell from CODECS whether its frame rate was planned right.
_LEVELS: Final = (
    (10, 1_485, 99, 64),
    (11, 3_000, 396, 192),
    (12, 6_000, 396, 384),
    (13, 11_880, 396, 768),
    (20, 11_880, 396, 2_000),
    (21, 19_800, 792, 4_000),
    (22, 20_250, 1_620, 4_000),
    (30, 40_500, 1_620, 10_000),
    (31, 108_000, 3_600, 14_000),
    (32, 216_000, 5_120, 20_000),
    (40, 245_760, 8_192, 20_000),
    (41, 245_760, 8_192, 50_000),
    (42, 522_240, 8_704, 50_000),
    (50, 589_824, 22_080, 135_000),
    (51, 983_040, 36_864, 240_000),
    (52, 2_073_600, 36_864, 240_000),
)


@dataclass(frozen=True)
class Rung:
    name: str
    width: int
    height: int
    video_kbps: int
    """Cap of the video bitrate (`-maxrate`); the average is usually lower."""
    audio_kbps: int
    level: int
    """H.264 level_idc (41 = 4.1); the profile is always High."""

    @property
    def level_text(self) -> str:
        return f"{self.level // 10}.{self.level % 10}"

    def codecs(self, *, audio: bool) -> str:
        """Returns the RFC 6381 CODECS value of this rung (High profile, AAC-LC)."""
        video = f"avc1.6400{self.level:02x}"
        return f"{video},mp4a.40.2" if audio else video


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def _video_kbps(width: int, height: int, fps: float) -> int:
    kbps = _REFERENCE_KBPS * (width * height / _REFERENCE_PIXELS) ** 0.75
    if fps > 31:
        kbps *= 1.4
    return max(200, int(round(kbps / 50) * 50))


def h264_level(width: int, height: int, fps: float, max_kbps: int) -> int:
    """Returns the lowest H.264 level (level_idc) fitting this size, frame rate and bitrate."""
    mbs_w, mbs_h = math.ceil(width / 16), math.ceil(height / 16)
    frame_mbs = mbs_w * mbs_h
    for level, max_mbps, max_fs, max_br in _LEVELS:
        if (
            frame_mbs <= max_fs
            and mbs_w**2 <= 8 * max_fs
            and mbs_h**2 <= 8 * max_fs
            and frame_mbs * fps <= max_mbps
            and max_kbps <= max_br * 1.25
        ):
            return level
    return _LEVELS[-1][0]


def plan_ladder(
    width: int, height: int, *, fps: float | None, heights: tuple[int, ...]
) -> list[Rung]:
    """Returns the rungs for a source of this display size encoded at `fps` (the output rate,
    see `framerate.output_rate`), largest first."""
    short, long = min(width, height), max(width, height)
    landscape = width >= height
    rate = fps if fps is not None and math.isfinite(fps) and fps > 0 else 30.0
    sizes: list[int] = [h for h in sorted(set(heights), reverse=True) if h <= short]
    if not sizes:
        sizes = [short - short % 2 or 2]
    rungs = []
    for rung_short in sizes:
        rung_long = _even(rung_short * long / short)
        w, h = (rung_long, rung_short) if landscape else (rung_short, rung_long)
        kbps = _video_kbps(w, h, rate)
        rungs.append(
            Rung(
                name=f"{rung_short}p",
                width=w,
                height=h,
                video_kbps=kbps,
                audio_kbps=128 if rung_short >= 480 else 96,
                level=h264_level(w, h, rate, kbps),
            )
        )
    return rungs
