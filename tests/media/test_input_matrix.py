"""Every kind of file of `input_kinds` through the real worker: its final status, the size and
duration the API reports, and — downloading a rendition through /play and reading it with
PyAV — that what the master playlist declares is what was encoded: FRAME-RATE is the real,
constant frame rate; the level in CODECS is the one in the stream and is enough for that size
and rate; RESOLUTION is the coded size, with square pixels, in the source's display aspect;
colours are tagged (BT.709 for tone-mapped HDR, with the poster converted too); the audio the
playlist declares is there (the default track's), and none when it declares none.

`AVC_MATRIX_REPORT=path` appends one Markdown table row per kind to that file.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from av.container import InputContainer
from tests.media.conftest import Media
from tests.media.input_kinds import KINDS, Kind, encoders

from avc_media.encoding.avprobe import MATRICES, PRIMARIES, RANGES, TRANSFERS
from avc_media.encoding.framerate import sustained_rate
from avc_media.encoding.ladder import h264_level

pytestmark = pytest.mark.slow
ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)')
SDR_BT709 = ("bt709", "bt709", "bt709", "tv")


@dataclass
class Rendition:
    width: int
    height: int
    sar: Fraction | None
    level: int
    pix_fmt: str
    colour: tuple[str, str, str, str]
    """primaries, transfer, matrix, range of the first frame."""
    rate: float | None
    intervals: tuple[float, float]
    """Shortest and longest frame interval (seconds): equal for a constant rate."""
    planes: tuple[float, ...]
    """Mean 8-bit Y, U, V of the first frame."""
    audio_streams: int
    audio_rms: float


def _plane_means(frame: av.VideoFrame) -> tuple[float, ...]:
    """Returns the mean of each of the first three planes, on the 8-bit scale."""
    deep = frame.format.name.endswith(("10le", "12le"))
    means = []
    for plane in frame.planes[:3]:
        data = bytes(plane)
        row_bytes = plane.width * (2 if deep else 1)
        total = 0.0
        for row in range(plane.height):
            line = data[row * plane.line_size : row * plane.line_size + row_bytes]
            total += sum(array.array("H", line)) / 4 if deep else sum(line)
        means.append(total / (plane.width * plane.height))
    return tuple(means)


def _colour(frame: av.VideoFrame) -> tuple[str, str, str, str]:
    return (
        PRIMARIES.get(frame.color_primaries, "unknown"),
        TRANSFERS.get(frame.color_trc, "unknown"),
        MATRICES.get(frame.colorspace, "unknown"),
        RANGES.get(frame.color_range, "unknown"),
    )


def first_frame(path: Path) -> tuple[float, ...]:
    """Returns the plane means of the first frame of a file (see `_plane_means`)."""
    with av.open(str(path)) as container:
        return _plane_means(next(container.decode(video=0)))


def analyse(path: Path) -> Rendition:
    with av.open(str(path)) as container:
        assert isinstance(container, InputContainer)
        video = container.streams.video[0]
        context = video.codec_context
        times: list[float] = []
        first: av.VideoFrame | None = None
        for packet in container.demux(video):
            if packet.pts is not None and video.time_base is not None:
                times.append(float(packet.pts * video.time_base))
            if first is None:
                frames = packet.decode()
                first = frames[0] if frames else None
        assert first is not None
        ordered = sorted(set(times))
        gaps = [b - a for a, b in itertools.pairwise(ordered)]
        rendition = Rendition(
            width=context.width,
            height=context.height,
            sar=video.sample_aspect_ratio,
            level=context.level,
            pix_fmt=context.pix_fmt or "",
            colour=_colour(first),
            rate=sustained_rate(times),
            intervals=(min(gaps), max(gaps)) if gaps else (0.0, 0.0),
            planes=_plane_means(first),
            audio_streams=len(container.streams.audio),
            audio_rms=0.0,
        )
    if rendition.audio_streams:
        with av.open(str(path)) as container:
            squares, count = 0.0, 0
            for frame in container.decode(audio=0):
                samples = array.array("f", bytes(frame.planes[0])[: frame.samples * 4])
                squares += sum(s * s for s in samples)
                count += len(samples)
            rendition.audio_rms = (squares / count) ** 0.5 if count else 0.0
    return rendition


def _stream_inf(master: str) -> list[tuple[dict[str, str], str]]:
    lines = master.splitlines()
    return [
        ({k: v.strip('"') for k, v in ATTRIBUTE.findall(line.split(":", 1)[1])}, lines[i + 1])
        for i, line in enumerate(lines)
        if line.startswith("#EXT-X-STREAM-INF:")
    ]


async def _get(media: Media, url: str) -> bytes:
    response = await media.client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content


async def _download(media: Media, base: str, uri: str, target: Path) -> None:
    playlist = (await _get(media, f"{base}/{uri}")).decode()
    rung = uri.rsplit("/", 1)[0]
    segments = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    data = b"".join([await _get(media, f"{base}/{rung}/{s}") for s in segments])
    await asyncio.to_thread(target.write_bytes, data)


def _report(kind: Kind, cells: list[str]) -> None:
    path = os.environ.get("AVC_MATRIX_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write("| " + " | ".join([kind.name, *cells]) + " |\n")


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
async def test_what_an_upload_becomes(kind: Kind, make_media: Any, tmp_path: Path) -> None:
    if kind.needs_encoder and kind.needs_encoder not in encoders():
        pytest.skip(f"this ffmpeg has no {kind.needs_encoder} encoder to make the sample")
    source = tmp_path / f"source{kind.suffix}"
    await asyncio.to_thread(kind.make, source)
    async with make_media(worker=True, ladder=kind.ladder, segment_seconds=2) as media:
        video_id = await media.upload("acct_a", source)
        video = await media.wait_status("acct_a", video_id)

        if kind.status == "failed":
            assert video["status"] == "failed"
            assert video["error"]["code"] == "invalid_media"
            assert kind.error is not None
            assert video["error"]["message"].startswith(kind.error), video["error"]
            _report(kind, ["failed: " + video["error"]["message"].split(":")[0]] + [""] * 7)
            return

        assert video["status"] == "ready", video["error"]
        assert (video["width"], video["height"]) == kind.size
        assert video["duration_seconds"] == pytest.approx(kind.duration, abs=0.1)
        master = (await _get(media, video["hls_url"])).decode()
        variants = _stream_inf(master)
        assert variants
        base = video["hls_url"].rsplit("/", 1)[0]
        for attributes, uri in variants:
            path = tmp_path / f"{uri.split('/')[0]}.ts"
            await _download(media, base, uri, path)
            got = await asyncio.to_thread(analyse, path)

            # RESOLUTION: the coded size, square pixels, the source's display aspect.
            width, height = (int(n) for n in attributes["RESOLUTION"].split("x"))
            assert (got.width, got.height) == (width, height)
            assert got.sar in (None, Fraction(0), Fraction(1))
            assert width / height == pytest.approx(kind.size[0] / kind.size[1], rel=0.03)

            # FRAME-RATE: what is really there, constant, and what this kind must get.
            declared = float(attributes["FRAME-RATE"])
            assert kind.fps is not None
            assert declared == pytest.approx(kind.fps, abs=0.01)
            assert got.rate == pytest.approx(declared, rel=0.002)
            shortest, longest = got.intervals
            assert longest - shortest <= 2 / 90_000, got.intervals

            # CODECS: the level in the stream, and enough for this size at this rate.
            codecs = attributes["CODECS"].split(",")
            level = int(codecs[0].removeprefix("avc1.6400"), 16)
            assert got.level == level
            assert level >= h264_level(width, height, round(got.rate or 0, 3), 0)
            assert got.pix_fmt == "yuv420p"

            # Audio: declared exactly when present (and the default track's when several).
            assert ("mp4a.40.2" in codecs) is kind.audio
            assert got.audio_streams == (1 if kind.audio else 0)
            if kind.audio:
                assert got.audio_rms > 0.05  # a tone, not the silent first track

            # Colour: HDR tone-mapped to SDR BT.709 and tagged so; never left tagged HDR.
            assert got.colour[1] not in ("smpte2084", "arib-std-b67")
            if kind.hdr:
                assert got.colour == SDR_BT709
                # Converted, not just cut to 8 bits: the planes moved away from the 10-bit
                # code values read as 8-bit ones (what an unconverted encode shows).
                naive = await asyncio.to_thread(first_frame, source)
                assert max(abs(a - b) for a, b in zip(got.planes, naive, strict=True)) >= 10, (
                    got.planes,
                    naive,
                )
                # The poster too: a full-range JPEG, so the rendition's 16-235 planes are
                # stretched (and clipped) to 0-255 to compare.
                poster = tmp_path / "poster.jpg"
                poster.write_bytes(await _get(media, video["thumbnail_url"]))
                y, u, v = got.planes
                full = [(y - 16) * 255 / 219, *((c - 128) * 255 / 224 + 128 for c in (u, v))]
                expected = tuple(min(255.0, max(0.0, c)) for c in full)
                assert await asyncio.to_thread(first_frame, poster) == pytest.approx(
                    expected, abs=4
                )

        _report(
            kind,
            [
                "ready",
                f"{video['width']}x{video['height']}",
                f"{video['duration_seconds']:.2f}",
                attributes["RESOLUTION"],
                attributes["FRAME-RATE"],
                f"{got.rate:.3f}",
                attributes["CODECS"],
                "/".join(got.colour),
            ],
        )
