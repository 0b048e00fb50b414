"""`avc migrate`: bulk upload of a folder or a CSV list, safe to run again.

Every finished file appends one line to a JSONL manifest (`.avc-migrate.jsonl` in the folder,
or `<csv>.avc-migrate.jsonl` beside the CSV): path, size, mtime, SHA-256, result, video id,
error. A re-run skips a file whose last line says `ok` for the same size and mtime, and any
file whose SHA-256 the account already has a video for (uploaded by an earlier run, another
machine or by hand) — those are not sent again. A file whose video already failed processing
stays failed (same bytes, same outcome) unless `--retry-failed`. Uploads themselves resume
(see `avcaption_client.uploads`), so a killed migration loses at most the chunks in flight.
"""

from __future__ import annotations

import asyncio
import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from ..async_client import AsyncClient
from ..errors import ApiError, AvcError
from ..models import Video
from ..uploads import check_source, sha256_file
from .progress import UploadDisplay

VIDEO_SUFFIXES: Final = frozenset(
    [
        ".mp4",
        ".m4v",
        ".mov",
        ".mkv",
        ".webm",
        ".avi",
        ".wmv",
        ".flv",
        ".mpg",
        ".mpeg",
        ".ts",
        ".mts",
        ".m2ts",
        ".3gp",
        ".ogv",
        ".mxf",
    ]
)
MANIFEST_NAME: Final = ".avc-migrate.jsonl"


@dataclass
class Item:
    path: Path
    title: str | None = None


@dataclass
class Outcome:
    path: str
    result: str  # "uploaded", "skipped" (already there) or "failed"
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    video_id: str | None = None
    video_status: str | None = None
    detail: str | None = None
    code: str | None = None
    request_id: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def ok(self) -> bool:
        return self.result != "failed"


def collect(source: Path) -> tuple[list[Item], Path]:
    """The files to migrate and the manifest's path, from a folder or a CSV (`path[,title]`
    with a header row; relative paths are relative to the CSV)."""
    if source.is_dir():
        items = [
            Item(p)
            for p in sorted(source.rglob("*"))
            if p.is_file()
            and p.suffix.lower() in VIDEO_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(source).parts)
        ]
        return items, source / MANIFEST_NAME
    with source.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ValueError(f"{source}: the CSV needs a header row with a `path` column")
        items = []
        for row in reader:
            raw = (row.get("path") or "").strip()
            if not raw:
                continue
            path = Path(raw).expanduser()
            if not path.is_absolute():
                path = source.parent / path
            items.append(Item(path, (row.get("title") or "").strip() or None))
    return items, source.with_name(source.name + MANIFEST_NAME)


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The last record of each path (a torn last line from a killed run is ignored)."""
    last: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return last
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("path"), str):
            last[record["path"]] = record
    return last


class Migration:
    def __init__(
        self,
        client: AsyncClient,
        items: list[Item],
        manifest: Path,
        *,
        concurrency: int,
        parallel: int,
        wait: bool,
        retry_failed: bool,
        wait_timeout: float,
        display: UploadDisplay,
    ) -> None:
        self.client = client
        self.items = items
        self.manifest = manifest
        self.concurrency = concurrency
        self.parallel = parallel
        self.wait = wait
        self.retry_failed = retry_failed
        self.wait_timeout = wait_timeout
        self.display = display
        self.done = read_manifest(manifest)
        self.by_sha: dict[str, Video] = {}
        self._claimed: set[str] = set()

    async def run(self) -> list[Outcome]:
        async for video in self.client.iter_videos():
            if video.sha256:
                # Newest first: keep the newest, unless an older copy did not fail.
                known = self.by_sha.get(video.sha256)
                if known is None or (known.status == "failed" and video.status != "failed"):
                    self.by_sha[video.sha256] = video
        limit = asyncio.Semaphore(max(1, self.concurrency))

        async def one(item: Item) -> Outcome:
            async with limit:
                outcome = await self._migrate(item)
            self._record(outcome)
            return outcome

        return list(await asyncio.gather(*(one(item) for item in self.items)))

    def _record(self, outcome: Outcome) -> None:
        with self.manifest.open("a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(outcome)) + "\n")

    async def _migrate(self, item: Item) -> Outcome:
        key = str(item.path.resolve())
        try:
            size = await asyncio.to_thread(check_source, item.path)
            mtime = item.path.stat().st_mtime_ns
        except (OSError, ValueError) as exc:
            return Outcome(key, "failed", detail=str(exc), code="unreadable")
        previous = self.done.get(key)
        if (
            previous is not None
            and previous.get("result") in ("uploaded", "skipped")
            and previous.get("size") == size
            and previous.get("mtime_ns") == mtime
        ):
            self.display.skip(item.path, size)
            return Outcome(
                key,
                "skipped",
                size,
                mtime,
                previous.get("sha256"),
                previous.get("video_id"),
                previous.get("video_status"),
                "done in an earlier run",
            )
        base = Outcome(key, "failed", size, mtime)
        try:
            base.sha256 = await asyncio.to_thread(sha256_file, item.path)
            existing = self.by_sha.get(base.sha256)
            if base.sha256 in self._claimed:
                self.display.skip(item.path, size)
                return self._same(base, "the same bytes as another file of this run")
            self._claimed.add(base.sha256)
            if existing is not None and (existing.status != "failed" or not self.retry_failed):
                self.display.skip(item.path, size)
                return await self._existing(base, existing)
            self.display.add_file(item.path, size)
            result = await self.client.upload(
                item.path,
                title=item.title,
                parallel=self.parallel,
                progress=self.display.callback(item.path),
            )
            base.video_id = result.video_id
            base.video_status = result.status
            if self.wait:
                video = await self.client.wait_for_video(result.video_id, timeout=self.wait_timeout)
                return self._finished(base, video, "uploaded")
            base.result = "uploaded"
            return base
        except ApiError as exc:
            base.detail, base.code, base.request_id = exc.message, exc.code, exc.request_id
        except (AvcError, OSError, ValueError, TimeoutError) as exc:
            base.detail, base.code = str(exc), type(exc).__name__
        finally:
            self.display.finish_file(item.path, "")
        return base

    def _same(self, base: Outcome, detail: str) -> Outcome:
        base.result, base.detail = "skipped", detail
        return base

    async def _existing(self, base: Outcome, video: Video) -> Outcome:
        if self.wait and not video.finished:
            video = await self.client.wait_for_video(video.id, timeout=self.wait_timeout)
        outcome = self._finished(base, video, "skipped")
        if outcome.ok:
            outcome.detail = "already uploaded"
        return outcome

    def _finished(self, base: Outcome, video: Video, result: str) -> Outcome:
        base.video_id, base.video_status = video.id, video.status
        if video.status == "failed":
            base.result = "failed"
            base.code = video.error.code if video.error else "video_failed"
            message = video.error.message if video.error else "processing failed"
            base.detail = message if result == "uploaded" else f"already uploaded; {message}"
        else:
            base.result = result
        return base


def summary(outcomes: list[Outcome]) -> dict[str, int]:
    counts = {"ok": 0, "failed": 0, "uploaded": 0, "skipped": 0}
    for outcome in outcomes:
        counts["ok" if outcome.ok else "failed"] += 1
        if outcome.result in ("uploaded", "skipped"):
            counts[outcome.result] += 1
    return counts
