"""Colour: what a source's pixels mean, and turning HDR or wide-gamut sources into SDR BT.709.

Every rendition is 8-bit H.264 for SDR screens. An HDR source (PQ/`smpte2084` as in HDR10 and
Dolby Vision profile 8 base layers, HLG/`arib-std-b67` as phones record it) squeezed into 8 bits
unconverted plays washed out and flat, and players that trust the tags show it wrong again.
So such a source is tone-mapped: zscale linearises it (PQ/HLG to linear light, 100 nits as
reference white), converts BT.2020 primaries to BT.709 in linear light, `tonemap=hable`
compresses the highlights, and zscale brings it back to BT.709 transfer and matrix, limited
range. A wide-gamut SDR source (BT.2020 primaries, SDR transfer) only has its primaries
converted. The output of either is tagged BT.709 (primaries, transfer, matrix, range `tv`);
every other source keeps its own tags, which ffmpeg carries over from the decoded frames, since
its pixels are not converted.

Both zscale (zimg) and tonemap are in the static ffmpeg of the imageio-ffmpeg wheel and in
Debian's ffmpeg; a build without them fails the encode of HDR sources only (`encode_failed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

HDR_TRANSFERS: Final = ("smpte2084", "arib-std-b67")
WIDE_GAMUT_PRIMARIES: Final = ("bt2020",)
SDR_TAGS: Final = (
    "-color_primaries",
    "bt709",
    "-color_trc",
    "bt709",
    "-colorspace",
    "bt709",
    "-color_range",
    "tv",
)
REFERENCE_WHITE_NITS: Final = 100


@dataclass(frozen=True)
class Colour:
    """A video stream's colour properties, by the names ffprobe uses ("unknown": not stated)."""

    primaries: str = "unknown"
    transfer: str = "unknown"
    matrix: str = "unknown"
    range: str = "unknown"

    @property
    def hdr(self) -> bool:
        return self.transfer in HDR_TRANSFERS

    @property
    def wide_gamut(self) -> bool:
        return self.primaries in WIDE_GAMUT_PRIMARIES

    @property
    def converted(self) -> bool:
        """True when the encode converts it to SDR BT.709 (and tags the output so)."""
        return self.hdr or self.wide_gamut


def _known(value: str, fallback: str) -> str:
    return value if value not in ("unknown", "") else fallback


def _input(colour: Colour) -> str:
    # What zscale reads the source as: its own tags, BT.2020 where a tag is missing (a stream
    # that states PQ or HLG and nothing else is BT.2020 in practice).
    return (
        f"tin={_known(colour.transfer, 'bt2020-10')}"
        f":pin={_known(colour.primaries, 'bt2020')}"
        f":min={_known(colour.matrix, 'bt2020nc')}"
        f":rin={_known(colour.range, 'tv')}"
    )


def sdr_filter(colour: Colour, *, size: tuple[int, int] | None = None) -> str:
    """Returns the filter chain (ending in 8-bit yuv420p) that makes the source SDR BT.709, or
    "" when its pixels are kept as they are. `size`: scale to it first (the largest rung, when
    smaller than the source), so the costly float steps run on fewer pixels."""
    scale = f":w={size[0]}:h={size[1]}" if size else ""
    if colour.hdr:
        return (
            f"zscale={_input(colour)}{scale}:t=linear:npl={REFERENCE_WHITE_NITS},"
            "format=gbrpf32le,"
            "zscale=p=bt709,tonemap=tonemap=hable:desat=0,"
            "zscale=t=bt709:m=bt709:r=tv,format=yuv420p"
        )
    if colour.wide_gamut:
        return f"zscale={_input(colour)}{scale}:p=bt709:t=bt709:m=bt709:r=tv,format=yuv420p"
    return ""


def output_tags(colour: Colour) -> tuple[str, ...]:
    """Returns the encoder options tagging the output's colour (empty: the source's carry over)."""
    return SDR_TAGS if colour.converted else ()
