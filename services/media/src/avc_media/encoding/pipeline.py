"""One encode, start to end: source to a local file, probe, poster, HLS ladder, upload.

`Encoder.encode()` is an async context manager: it yields the finished output in a temporary
folder (removed on exit), so the worker can check it still owns the video before `store()`
copies the files to `videos/<id>/…`. Permanent problems with the upload raise MediaRejected
(shown to the user); anything else (storage down, the worker's own trouble) raises as is, so
the encode is retried.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread

from avc_common.logging import get_logger
from avc_common.objects import LocalObjectStore, ObjectNotFound, ObjectStore, validate_key
from avc_media.config import MediaSettings
from avc_media.encoding import hls
from avc_media.encoding.ffmpeg import Binaries, FfmpegTimeout, RunResult, run
from avc_media.encoding.plan import plan_encode
from avc_media.encoding.probe import MediaInfo, MediaRejected, check_limits, pixel_cap, probe_media
from avc_media.playback import MASTER_PLAYLIST, THUMBNAIL, content_type_for, video_prefix

log = get_logger(__name__)

_UPLOAD_PARALLELISM: Final = 8
_READ_CHUNK: Final = 1024 * 1024
POSTER_MAX_SHORT_SIDE: Final = 720


def encode_failed(message: str | None = None) -> MediaRejected:
    return MediaRejected(
        "encode_failed",
        message
        or "The video could not be encoded. Re-export it as MP4 (H.264/AAC) and upload it again.",
    )


@dataclass(frozen=True)
class EncodeOutput:
    info: MediaInfo
    renditions: list[hls.RenditionResult]
    out_dir: Path
    probe_seconds: float
    encode_seconds: float

    @property
    def duration_seconds(self) -> float:
        if self.info.duration_seconds:
            return round(self.info.duration_seconds, 3)
        return round(self.renditions[0].duration, 3)

    def files(self) -> list[tuple[str, Path]]:
        """Returns (relative path, local file) of every output, the master playlist last."""
        out: list[tuple[str, Path]] = []
        for root, _, names in os.walk(self.out_dir):
            for name in sorted(names):
                full = Path(root) / name
                rel = full.relative_to(self.out_dir).as_posix()
                if rel != MASTER_PLAYLIST:
                    out.append((rel, full))
        out.sort(key=lambda item: (item[0] == THUMBNAIL, item[0].endswith(".m3u8"), item[0]))
        out.append((MASTER_PLAYLIST, self.out_dir / MASTER_PLAYLIST))
        return out


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as handle:
        while chunk := await handle.read(_READ_CHUNK):
            yield chunk


class Encoder:
    def __init__(
        self, *, settings: MediaSettings, binaries: Binaries, objects: ObjectStore
    ) -> None:
        self.settings = settings
        self.binaries = binaries
        self.objects = objects

    def _work_root(self) -> str:
        root = self.settings.work_dir
        if root is None:
            return tempfile.gettempdir()
        root.mkdir(parents=True, exist_ok=True)
        return str(root)

    async def _local_source(self, source_key: str, work: Path) -> Path:
        """Returns a local path of the source: the file itself on local storage, else a
        streamed copy in the work folder."""
        try:
            validate_key(source_key)
            info = await self.objects.stat(source_key)
        except (ObjectNotFound, ValueError):
            raise MediaRejected(
                "source_missing", "The uploaded file is missing. Upload the video again."
            ) from None
        if info.size > self.settings.max_source_bytes:
            raise MediaRejected(
                "file_too_large",
                f"The file is {info.size} bytes; the largest accepted file is "
                f"{self.settings.max_source_bytes} bytes.",
            )
        if isinstance(self.objects, LocalObjectStore):
            path = Path(self.objects.root, *source_key.split("/"))
            if await anyio.Path(path).is_file():
                return path
        target = work / "source"
        async with (
            await anyio.open_file(target, "wb") as out,
            await self.objects.get(source_key) as reader,
        ):
            async for chunk in reader:
                await out.write(chunk)
        return target

    @asynccontextmanager
    async def encode(self, *, video_id: str, source_key: str) -> AsyncIterator[EncodeOutput]:
        """Yields the encoded output of the video's source (see the module docstring)."""
        work = Path(tempfile.mkdtemp(prefix=f"avc-encode-{video_id}-", dir=self._work_root()))
        try:
            yield await self._encode(video_id, source_key, work)
        finally:
            await anyio.to_thread.run_sync(lambda: shutil.rmtree(work, ignore_errors=True))

    async def _encode(self, video_id: str, source_key: str, work: Path) -> EncodeOutput:
        settings = self.settings
        started = time.monotonic()
        source = await self._local_source(source_key, work)
        info = await probe_media(self.binaries, source, settings=settings)
        probed = time.monotonic()
        plan = plan_encode(info, heights=settings.ladder_heights)
        rungs = plan.rungs
        out_dir = work / "out"
        for rung in rungs:
            (out_dir / rung.name).mkdir(parents=True)
        poster_rung = next(
            (r for r in rungs if min(r.width, r.height) <= POSTER_MAX_SHORT_SIDE), rungs[-1]
        )
        cap = pixel_cap(settings)
        timeout = settings.encode_timeout_base_seconds + settings.encode_timeout_factor * (
            info.duration_seconds or 0
        )
        log.info(
            "encode_started",
            video_id=video_id,
            container=info.container,
            codec=info.video_codec,
            width=info.width,
            height=info.height,
            duration=info.duration_seconds,
            audio=info.has_audio,
            audio_track=plan.audio_track,
            source_fps=info.fps,
            average_fps=info.average_fps,
            fps=plan.fps,
            colour=info.colour.transfer,
            tone_mapped=bool(plan.colour_filter),
            rungs=[r.name for r in rungs],
        )
        poster = [
            hls.thumbnail_command(
                self.binaries.ffmpeg,
                source,
                out_dir / THUMBNAIL,
                info=info,
                plan=plan,
                rung=poster_rung,
                pixel_cap=cap,
                at=at,
            )
            # The first frame when the chosen instant has none (a video track shorter than
            # the container says).
            for at in (None, 0.0)
        ]
        ladder = hls.encode_command(
            self.binaries.ffmpeg,
            source,
            out_dir,
            info=info,
            plan=plan,
            settings=settings,
            pixel_cap=cap,
        )
        try:
            for attempt, argv in enumerate(poster, start=1):
                poster_run = await run(
                    argv,
                    limit=settings.probe_timeout_seconds,
                    nice=settings.ffmpeg_nice,
                )
                if poster_run.returncode == 0 and await anyio.Path(out_dir / THUMBNAIL).is_file():
                    break
                if attempt == len(poster):
                    self._check(video_id, "poster", poster_run)
                    log.warning("encode_no_poster", video_id=video_id)
                    raise encode_failed()
                if poster_run.killed_by_signal:
                    self._check(video_id, "poster", poster_run)
            encode_run = await run(ladder, limit=timeout, nice=settings.ffmpeg_nice)
            self._check(video_id, "ladder", encode_run)
        except FfmpegTimeout as exc:
            log.warning("encode_timeout", video_id=video_id, output=exc.output[-4000:])
            raise encode_failed(
                "Encoding took longer than allowed; the file may be damaged. "
                "Re-export it as MP4 (H.264/AAC) and upload it again."
            ) from None
        try:
            renditions = [hls.read_rendition(rung, out_dir) for rung in rungs]
        except (hls.PlaylistError, OSError, ValueError) as exc:
            log.warning("encode_output_invalid", video_id=video_id, error=str(exc))
            raise encode_failed() from None
        measured = max(r.duration for r in renditions)
        if info.duration_seconds is None or measured > info.duration_seconds + 2:
            # The container understated its length: the real one counts.
            check_limits(replace(info, duration_seconds=measured), settings)
        (out_dir / MASTER_PLAYLIST).write_text(
            hls.master_playlist(renditions, audio=plan.audio_track is not None, fps=plan.fps),
            encoding="utf-8",
        )
        finished = time.monotonic()
        return EncodeOutput(
            info=info,
            renditions=renditions,
            out_dir=out_dir,
            probe_seconds=probed - started,
            encode_seconds=finished - probed,
        )

    @staticmethod
    def _check(video_id: str, step: str, result: RunResult) -> None:
        if result.killed_by_signal:
            # Killed from outside (OOM killer, operator): not the file's fault, retry.
            raise RuntimeError(f"ffmpeg ({step}) was killed by signal {-result.returncode}")
        if result.returncode != 0:
            log.warning(
                "encode_ffmpeg_failed",
                video_id=video_id,
                step=step,
                returncode=result.returncode,
                output=result.stderr[-4000:],
            )
            raise encode_failed()

    async def store(self, video_id: str, output: EncodeOutput) -> int:
        """Replaces whatever is under `videos/<id>/` by the output; returns the bytes stored.
        Segments and media playlists go first, the poster, then the master playlist last."""
        prefix = video_prefix(video_id)
        await self.objects.delete_prefix(prefix)
        files = output.files()
        body, tail = files[:-2], files[-2:]
        slots = asyncio.Semaphore(_UPLOAD_PARALLELISM)
        total = 0

        async def put(rel: str, path: Path) -> None:
            nonlocal total
            async with slots:
                size = (await anyio.Path(path).stat()).st_size
                await self.objects.put(
                    f"{prefix}/{rel}",
                    _file_chunks(path),
                    size=size,
                    content_type=content_type_for(rel).split(";")[0],
                )
                total += size

        async with asyncio.TaskGroup() as group:
            for rel, path in body:
                group.create_task(put(rel, path))
        for rel, path in tail:
            await put(rel, path)
        return total
