"""What one encode makes of a probed source: rungs, the output frame rate, the audio track, the
colour conversion. Everything the ffmpeg command lines and the master playlist declare comes
from here, so what is declared (`FRAME-RATE`, the level in `CODECS`) is what is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from avc_media.encoding.colour import output_tags, sdr_filter
from avc_media.encoding.framerate import output_rate
from avc_media.encoding.ladder import Rung, plan_ladder
from avc_media.encoding.probe import MediaInfo


@dataclass(frozen=True)
class EncodePlan:
    rungs: list[Rung]
    rate: Fraction
    """The constant frame rate every rendition is encoded at (at most 60 fps)."""
    audio_track: int | None
    """Which audio stream is encoded (`0:a:N`); None: the renditions are silent."""
    colour_filter: str
    """Filters turning HDR/wide-gamut pixels into SDR BT.709 ("" for SDR sources)."""
    colour_tags: tuple[str, ...]
    """Encoder options tagging the output's colour (empty: the source's tags carry over)."""

    @property
    def fps(self) -> float:
        return float(self.rate)


def plan_encode(info: MediaInfo, *, heights: tuple[int, ...]) -> EncodePlan:
    """Returns the plan for a probed source and the configured ladder heights."""
    rate = output_rate(info.fps)
    rungs = plan_ladder(info.width, info.height, fps=float(rate), heights=heights)
    top = rungs[0]
    # Converted at the largest rung's size when that is smaller: the float steps cost. 3 s of
    # 1080p HLG to one 720p rung took 4.4 s of CPU converted at 1080p, 3.0 s at 720p, against
    # 2.3 s for the same encode without conversion.
    smaller = (top.width, top.height) if top.width * top.height < info.width * info.height else None
    return EncodePlan(
        rungs=rungs,
        rate=rate,
        audio_track=info.audio_track if info.has_audio else None,
        colour_filter=sdr_filter(info.colour, size=smaller),
        colour_tags=output_tags(info.colour),
    )
