"""Benchmark: how long a 60 s 720p upload takes to become `ready`, against running the same
ffmpeg commands by hand, in one run. Prints both figures and their ratio (target <= 1.15).

Platform side: the media API and the media worker in this process on the embedded adapters
(SQLite, local objects, in-process bus — the all-in-one wiring), with the default encode
settings. The clock starts once the source is stored, the video registered (through the
internal API, as the upload service does) and `video.uploaded` published, and stops when
`video.encoded` is published (the video reads `ready` at that point). That includes the
probe, the poster, the ladder encode, copying every file into storage and the bookkeeping.

By hand: the very same poster and ladder ffmpeg command lines (built by the same code, same
settings) run one after the other with `subprocess.run` into a temporary folder.

Rounds alternate (by hand, platform, by hand, ...) so both see the same machine load.

    .venv/bin/python bench/encode/run.py [--seconds 60] [--rounds 1] [--preset veryfast]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

from avc_common.config import Settings
from avc_common.events import Event, VideoUploaded
from avc_common.ids import new_id
from avc_common.internal_auth import INTERNAL_TOKEN_HEADER, Caller, mint_internal_token
from avc_common.logging import configure_logging
from avc_common.runtime import Adapters
from avc_common.web import LifespanManager
from avc_media.app import create_app
from avc_media.config import MediaSettings
from avc_media.encoding import hls
from avc_media.encoding.ffmpeg import find_binaries
from avc_media.encoding.ladder import plan_ladder
from avc_media.encoding.pipeline import POSTER_MAX_SHORT_SIDE
from avc_media.encoding.probe import pixel_cap, probe_media
from avc_media.worker import create_worker_app

TARGET_RATIO = 1.15
SECRET = "b" * 48
ACCOUNT = "acct_bench"


def make_clip(ffmpeg: str, path: Path, seconds: int) -> None:
    """Writes a 1280x720 25 fps H.264/AAC test clip (moving pattern, tone, a little noise)."""
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y"]
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate=25:duration={seconds}"]
    cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    cmd += ["-vf", "noise=alls=8:allf=t", "-c:v", "libx264", "-preset", "veryfast"]
    cmd += ["-b:v", "4M", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-shortest"]
    cmd += ["-movflags", "+faststart", str(path)]
    subprocess.run(cmd, check=True, timeout=600)


async def by_hand(source: Path, settings: MediaSettings, work: Path) -> float:
    """Returns the seconds the worker's poster + ladder commands take when run directly."""
    binaries = find_binaries(settings)
    info = await probe_media(binaries, source, settings=settings)  # not timed: builds argv
    rungs = plan_ladder(info.width, info.height, fps=info.fps, heights=settings.ladder_heights)
    out = work / f"hand-{time.monotonic_ns()}"
    for rung in rungs:
        (out / rung.name).mkdir(parents=True)
    poster_rung = next(
        (r for r in rungs if min(r.width, r.height) <= POSTER_MAX_SHORT_SIDE), rungs[-1]
    )
    cap = pixel_cap(settings)
    commands = [
        hls.thumbnail_command(
            binaries.ffmpeg,
            source,
            out / "thumbnail.jpg",
            info=info,
            rung=poster_rung,
            pixel_cap=cap,
        ),
        hls.encode_command(
            binaries.ffmpeg, source, out, info=info, rungs=rungs, settings=settings, pixel_cap=cap
        ),
    ]
    elapsed = await asyncio.to_thread(_run_all, commands)
    shutil.rmtree(out, ignore_errors=True)
    return elapsed


def _run_all(commands: list[list[str]]) -> float:
    start = time.perf_counter()
    for argv in commands:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=3600)
    return time.perf_counter() - start


class Platform:
    """The media API + worker in this process, sharing one set of embedded adapters."""

    def __init__(self, data: Path, settings: MediaSettings) -> None:
        self.settings = Settings(data_dir=data, internal_secret=SecretStr(SECRET))
        self.media_settings = settings
        self.adapters = Adapters(self.settings)
        self.api = create_app(self.settings, adapters=self.adapters, media_settings=settings)
        self.worker = create_worker_app(
            self.settings, adapters=self.adapters, media_settings=settings
        )
        self.encoded: dict[str, float] = {}
        self.failed: dict[str, Any] = {}

    async def __aenter__(self) -> Platform:
        self._worker_life = LifespanManager(self.worker)
        self._api_life = LifespanManager(self.api)
        await self._worker_life.__aenter__()
        await self._api_life.__aenter__()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.api), base_url="http://media"
        )
        bus = await self.adapters.bus()

        async def record(event: Event) -> None:
            if event.type == "video.encoded":
                self.encoded[event.data["video_id"]] = time.perf_counter()
            elif event.type == "video.failed":
                self.failed[event.data["video_id"]] = event.data["error"]

        await bus.subscribe("bench.recorder", ["video.encoded", "video.failed"], record)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._api_life.__aexit__(None, None, None)
        await self._worker_life.__aexit__(None, None, None)
        await self.adapters.aclose()

    async def upload_to_ready(self, source: Path) -> float:
        """Returns seconds from "stored + registered + published" to `video.encoded`."""
        video_id = new_id("vid")
        key = f"sources/{video_id}/original"
        data = await asyncio.to_thread(source.read_bytes)
        objects = await self.adapters.objects()
        await objects.put(key, data, size=len(data), content_type="video/mp4")
        token = mint_internal_token(Caller(account_id=ACCOUNT, plan="enterprise"), secret=SECRET)
        body = {
            "video_id": video_id,
            "upload_id": new_id("upl"),
            "filename": source.name,
            "title": "bench",
            "size_bytes": len(data),
            "sha256": None,
            "source_key": key,
        }
        response = await self.client.post(
            "/internal/v1/videos/register", json=body, headers={INTERNAL_TOKEN_HEADER: token}
        )
        response.raise_for_status()
        uploaded = VideoUploaded(**{k: v for k, v in body.items() if k != "sha256"})
        bus = await self.adapters.bus()
        await bus.publish(Event.of(uploaded, account_id=ACCOUNT))
        start = time.perf_counter()
        while video_id not in self.encoded:
            if video_id in self.failed:
                raise RuntimeError(f"encode failed: {self.failed[video_id]}")
            await asyncio.sleep(0.01)
        elapsed = self.encoded[video_id] - start
        token = mint_internal_token(Caller(account_id=ACCOUNT, plan="enterprise"), secret=SECRET)
        check = await self.client.get(
            f"/api/v1/videos/{video_id}", headers={INTERNAL_TOKEN_HEADER: token}
        )
        assert check.json()["status"] == "ready", check.text
        return elapsed


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="clip length (default 60)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of each side (default 1)")
    parser.add_argument("--preset", default=None, help="x264 preset (default: the setting's)")
    args = parser.parse_args()
    configure_logging(service="bench", level="WARNING", json=False)

    overrides: dict[str, Any] = {"playback_secret": SecretStr("p" * 48)}
    if args.preset:
        overrides["x264_preset"] = args.preset
    with tempfile.TemporaryDirectory(prefix="avc-bench-encode-") as tmp:
        root = Path(tmp)
        settings = MediaSettings(work_dir=root / "work", **overrides)
        binaries = find_binaries(settings)
        source = root / "clip-720p.mp4"
        make_clip(binaries.ffmpeg, source, args.seconds)
        info = await probe_media(binaries, source, settings=settings)
        rungs = plan_ladder(info.width, info.height, fps=info.fps, heights=settings.ladder_heights)
        print(
            f"clip: {info.duration_seconds:.0f} s {info.width}x{info.height} "
            f"{info.fps:g} fps H.264/AAC, {source.stat().st_size / 1e6:.1f} MB; "
            f"preset {settings.x264_preset}; ladder {', '.join(r.name for r in rungs)}; "
            f"ffmpeg {binaries.ffmpeg}"
        )
        hand: list[float] = []
        platform: list[float] = []
        async with Platform(root / "data", settings) as stack:
            for n in range(1, args.rounds + 1):
                hand.append(await by_hand(source, settings, root / "work"))
                platform.append(await stack.upload_to_ready(source))
                print(
                    f"round {n}: by hand {hand[-1]:.2f} s, platform {platform[-1]:.2f} s, "
                    f"ratio {platform[-1] / hand[-1]:.3f}"
                )
        a, b = statistics.median(hand), statistics.median(platform)
        ratio = b / a
        verdict = "ok" if ratio <= TARGET_RATIO else "OVER TARGET"
        print(
            f"median: by hand {a:.2f} s, platform {b:.2f} s -> ratio {ratio:.3f} "
            f"(target <= {TARGET_RATIO}) {verdict}"
        )
        return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
