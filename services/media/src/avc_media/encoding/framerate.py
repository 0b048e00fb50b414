"""The frame rate a video really has, read from its frame timestamps, and the rate it is encoded at.

Container fields lie for variable frame rate (VFR) sources: the average rate (`avg_frame_rate`)
of a phone clip that switches from 24 to 60 fps is 41.7, and ffmpeg's `r_frame_rate`/tbr (the
rate that represents every timestamp) is 120. What a viewer sees is the fastest rate the video
*keeps up* for a while: the smallest frame interval that a good share of the frames have.

`sustained_rate` groups the intervals between consecutive timestamps (jitter of a millisecond
timebase, 16/17/17 ms, lands in one group), and takes the fastest group holding at least
`_MIN_SHARE` of them; dropped frames (intervals of 2x, 3x the period) do not lower it. The
encode then runs at `output_rate`: that rate snapped to a standard one, and above 60 fps
divided down by a whole number (120 -> 60, 119.88 -> 59.94, 100 -> 50), so frames are
dropped evenly rather than juddering.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from fractions import Fraction
from typing import Final

MAX_RATE: Final = Fraction(60)
DEFAULT_RATE: Final = Fraction(30)
_MIN_SHARE: Final = 0.05
"""A group of intervals counts when it holds this share of all intervals (and 3 at least)."""
_GROUP_RATIO: Final = 1.15
_GROUP_SLACK_SECONDS: Final = 0.0015
_SNAP_TOLERANCE: Final = 0.005
STANDARD_RATES: Final = tuple(
    Fraction(n, d)
    for n, d in (
        (24000, 1001),
        (24, 1),
        (25, 1),
        (30000, 1001),
        (30, 1),
        (48, 1),
        (50, 1),
        (60000, 1001),
        (60, 1),
        (90, 1),
        (100, 1),
        (120000, 1001),
        (120, 1),
        (144, 1),
        (240, 1),
    )
)


def sustained_rate(timestamps: Iterable[float]) -> float | None:
    """Returns the fastest frame rate a good share of the frames keep (frames per second), from
    presentation timestamps in seconds (any order); None with fewer than two distinct ones."""
    times = sorted({t for t in timestamps if math.isfinite(t)})
    intervals = sorted(b - a for a, b in itertools.pairwise(times) if b > a)
    if not intervals:
        return None
    needed = max(min(3, len(intervals)), math.ceil(len(intervals) * _MIN_SHARE))
    start = 0
    while start < len(intervals):
        limit = intervals[start] * _GROUP_RATIO + _GROUP_SLACK_SECONDS
        end = start
        while end < len(intervals) and intervals[end] <= limit:
            end += 1
        if end - start >= needed:
            group = intervals[start:end]
            return len(group) / sum(group)
        start = end
    # No group is big enough (every interval differs): the mean rate is the best guess.
    return len(intervals) / sum(intervals)


def snap(rate: float) -> Fraction:
    """Returns the standard rate nearest to `rate` when within 0.5% of it, else `rate` to
    1/1000."""
    nearest = min(STANDARD_RATES, key=lambda standard: abs(rate / float(standard) - 1))
    if abs(rate / float(nearest) - 1) <= _SNAP_TOLERANCE:
        return nearest
    return Fraction(round(rate * 1000), 1000)


def output_rate(rate: float | None) -> Fraction:
    """Returns the constant rate to encode a source of this real rate at (at most 60 fps)."""
    if rate is None or not math.isfinite(rate) or rate <= 0:
        return DEFAULT_RATE
    snapped = snap(rate)
    if snapped <= MAX_RATE:
        return snapped
    divisor = math.ceil(snapped / MAX_RATE)
    return snap(float(snapped / divisor))


def rate_text(rate: Fraction) -> str:
    """Returns the rate as ffmpeg takes it (`60000/1001`, `25`)."""
    return str(rate.numerator) if rate.denominator == 1 else f"{rate.numerator}/{rate.denominator}"
