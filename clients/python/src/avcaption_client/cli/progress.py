"""Rich progress bars for uploads: one line per file in flight and a total line, each with
bytes, MB/s and ETA. Drawn on stderr, so `--json` output on stdout stays clean."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from ..uploads import UploadProgress
from .output import err


class UploadDisplay:
    """Progress of several files; `callback(path)` is the per-file progress callback."""

    def __init__(self, total_bytes: int, files: int, *, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("{task.description}", markup=True),
            BarColumn(bar_width=30),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=err,
            disable=not enabled,
            transient=False,
            refresh_per_second=8,
        )
        label = f"[bold]total[/] ({files} file{'s' if files != 1 else ''})"
        self.total = self.progress.add_task(label, total=total_bytes)
        self._files: dict[Path, TaskID] = {}
        self._sent: dict[Path, int] = {}

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.stop()

    def add_file(self, path: Path, size: int) -> None:
        name = escape(path.name if len(path.name) <= 40 else path.name[:37] + "...")
        self._files[path] = self.progress.add_task(name, total=size)
        self._sent[path] = 0

    def callback(self, path: Path) -> _FileCallback:
        return _FileCallback(self, path)

    def update(self, path: Path, progress: UploadProgress) -> None:
        task = self._files.get(path)
        if task is None:
            return
        before = self._sent[path]
        now = progress.sent_bytes
        self._sent[path] = now
        self.progress.update(task, completed=now)
        self.progress.advance(self.total, now - before)

    def skip(self, path: Path, size: int) -> None:
        """A file that needs no upload: its bytes count as done in the total."""
        self.progress.advance(self.total, size)

    def finish_file(self, path: Path, note: str) -> None:
        task = self._files.get(path)
        if task is not None:
            self.progress.update(task, description=f"{escape(path.name)} {note}")


class _FileCallback:
    def __init__(self, display: UploadDisplay, path: Path) -> None:
        self.display = display
        self.path = path

    def __call__(self, progress: UploadProgress) -> None:
        self.display.update(self.path, progress)
