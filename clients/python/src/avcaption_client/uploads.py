"""Pieces of `upload(path)` shared by both clients: the resume state file, reading and hashing a
chunk straight from the file, progress bookkeeping and the result.

How a chunked upload resumes: right after `init` a small JSON file (the state) records the
upload id, the source's size and mtime and the API URL. It sits beside the source
(`.<name>.avc-upload.json`) or, when that directory is not writable or `state_dir` is given,
in the state dir. A later run for the same file asks the upload's status and sends only the
chunks listed `missing`; an upload the server no longer knows (expired, aborted) or a file
that changed starts again from `init`. The state is removed once `complete` answered.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Final

MIB: Final = 1024 * 1024
# Up to this size `upload()` sends one multipart request (no resume needed for it).
DIRECT_MAX_BYTES: Final = 8 * MIB
DEFAULT_PARALLEL: Final = 4
STATE_SUFFIX: Final = ".avc-upload.json"


@dataclass
class UploadProgress:
    """Where one file's upload stands; given to the progress callback after each step."""

    path: Path
    total_bytes: int
    sent_bytes: int
    """Bytes the server holds now (including chunks a resumed run found already there)."""
    total_chunks: int = 1
    done_chunks: int = 0
    resumed_bytes: int = 0
    """Bytes that were already on the server when this run started (not sent again)."""


ProgressCallback = Callable[[UploadProgress], None]


@dataclass
class UploadResult:
    video_id: str
    embed_token: str
    status: str
    path: Path
    size: int
    chunked: bool
    upload_id: str | None = None
    chunks_sent: int = 0
    resumed: bool = False
    restarted: bool = False
    """True when a stored upload could not be resumed (expired, unknown) and began again."""
    seconds: float = 0.0
    """From the call to the answer of `complete` (or of the direct upload)."""


@dataclass
class UploadState:
    upload_id: str
    api_url: str
    path: str
    size: int
    mtime_ns: int
    chunk_size: int
    total_chunks: int

    def matches(self, source: Path, api_url: str) -> bool:
        st = source.stat()
        return (
            self.api_url == api_url
            and self.size == st.st_size
            and self.mtime_ns == st.st_mtime_ns
            and self.path == str(source.resolve())
        )


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "avcaption" / "uploads"


def state_path(source: Path, state_dir: Path | None = None) -> Path:
    """Where the state of `source`'s upload lives (beside it when that dir is writable)."""
    source = source.resolve()
    if state_dir is None and os.access(source.parent, os.W_OK):
        return source.parent / f".{source.name}{STATE_SUFFIX}"
    name = hashlib.sha256(str(source).encode()).hexdigest()[:32]
    return (state_dir or default_state_dir()) / f"{name}.json"


def load_state(path: Path) -> UploadState | None:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return UploadState(**raw)
    except (OSError, ValueError, TypeError):
        return None


def save_state(path: Path, state: UploadState) -> None:
    """Writes the state atomically (a killed process never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".avc-state-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(state), f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def forget_state(path: Path) -> None:
    path.unlink(missing_ok=True)


def new_state(
    source: Path, api_url: str, upload_id: str, chunk_size: int, total: int
) -> UploadState:
    st = source.stat()
    return UploadState(
        upload_id=upload_id,
        api_url=api_url,
        path=str(source.resolve()),
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        chunk_size=chunk_size,
        total_chunks=total,
    )


def chunk_length(index: int, chunk_size: int, size: int) -> int:
    return min(chunk_size, size - index * chunk_size)


def read_chunk(fd: int, buffer: bytearray, index: int, chunk_size: int, size: int) -> memoryview:
    """Reads chunk `index` into `buffer` (one per worker, reused) with pread — no shared file
    position between workers, no new allocation per chunk — and returns the filled part."""
    offset = index * chunk_size
    length = chunk_length(index, chunk_size, size)
    view = memoryview(buffer)[:length]
    got = 0
    while got < length:
        n = os.preadv(fd, [view[got:]], offset + got)
        if n == 0:
            raise OSError(f"file shrank while uploading (chunk {index} short)")
        got += n
    return view


def read_and_hash(
    fd: int, buffer: bytearray, index: int, chunk_size: int, size: int, checksum: bool = True
) -> tuple[memoryview, str | None]:
    """`read_chunk` and the chunk's SHA-256 (hex; None without `checksum`), in one call for a
    worker thread."""
    view = read_chunk(fd, buffer, index, chunk_size, size)
    return view, hashlib.sha256(view).hexdigest() if checksum else None


class ChunkBody:
    """A request body over a chunk in a reused buffer, handed over without a copy of ours (a
    retry iterates it again). One piece: the HTTP layer frames it in one write, as it would
    a bytes body — many small pieces cost an event-loop turn each. httpx takes a sync
    iterable for `Client` and an async one for `AsyncClient`: `for_async()` is the latter."""

    def __init__(self, view: memoryview) -> None:
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __iter__(self) -> Iterator[memoryview]:
        yield self.view

    def for_async(self) -> AsyncChunkBody:
        return AsyncChunkBody(self)


class AsyncChunkBody:
    def __init__(self, body: ChunkBody) -> None:
        self.body = body

    async def __aiter__(self) -> AsyncIterator[memoryview]:
        yield self.body.view


@dataclass
class ChunkPlan:
    """One run of a chunked upload: which chunks still go out."""

    upload_id: str
    chunk_size: int
    total_chunks: int
    missing: list[int]
    resumed: bool
    state_file: Path
    completed_video: str | None = None
    restarted: bool = False
    """A stored upload was found but could not be resumed (expired, aborted, file changed)."""
    checksum: bool = True
    """Send each chunk's SHA-256 (`X-Chunk-SHA256`) for the server to check."""


@dataclass
class ProgressTracker:
    """Counts what reached the server and tells the callback (thread-safe)."""

    path: Path
    size: int
    callback: ProgressCallback | None
    progress: UploadProgress = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.progress = UploadProgress(self.path, self.size, 0)

    def start(self, plan: ChunkPlan) -> None:
        missing = set(plan.missing)
        held = sum(
            chunk_length(i, plan.chunk_size, self.size)
            for i in range(plan.total_chunks)
            if i not in missing
        )
        with self._lock:
            self.progress = UploadProgress(
                self.path,
                self.size,
                held,
                total_chunks=plan.total_chunks,
                done_chunks=plan.total_chunks - len(missing),
                resumed_bytes=held,
            )
        self._tell()

    def add(self, nbytes: int, chunks: int = 0) -> None:
        with self._lock:
            self.progress.sent_bytes = min(self.size, self.progress.sent_bytes + nbytes)
            self.progress.done_chunks += chunks
        self._tell()

    def _tell(self) -> None:
        if self.callback is not None:
            with self._lock:
                snapshot = UploadProgress(**vars(self.progress))
            self.callback(snapshot)


def use_chunked(size: int, chunked: bool | None, direct_max: int = DIRECT_MAX_BYTES) -> bool:
    return chunked if chunked is not None else size > direct_max


def check_source(path: Path) -> int:
    """Returns the size of a readable regular file; raises OSError otherwise."""
    st = path.stat()
    if not path.is_file():
        raise IsADirectoryError(f"not a regular file: {path}")
    if st.st_size == 0:
        raise ValueError(f"empty file: {path}")
    return st.st_size


def sha256_file(path: Path, block: int = 4 * MIB) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while data := f.read(block):
            digest.update(data)
    return digest.hexdigest()


class Pacer:
    """Keeps the upload under `rate` bytes per second (`--max-rate`): each chunk reserves its
    slot of time and waits for it (thread-safe; the async client sleeps the delay)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self, nbytes: int) -> float:
        """Returns how many seconds to wait before sending `nbytes`."""
        if not self.rate:
            return 0.0
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + nbytes / self.rate
            return start - now
