"""File plumbing of the local object store: temp files renamed into place once durable,
fingerprints that tie a sidecar to its data file, directory fsync and pruning."""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Protocol

from avc_common.objects.base import ObjectsError

COPY_CHUNK: Final = 8 * 1024 * 1024
WRITE_CHUNK: Final = 1024 * 1024


def mtime_of(st: os.stat_result) -> datetime:
    ns = st.st_mtime_ns
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).replace(
        microsecond=(ns // 1000) % 1_000_000
    )


def fingerprint(st: os.stat_result) -> list[int]:
    # os.replace keeps the inode, so the temp file's fingerprint is the committed file's.
    return [st.st_ino, st.st_size, st.st_mtime_ns]


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


FaultHook = Callable[[str], None]
"""Called with the name of each durable step of publishing an object and of dropping a staging
dir (`LocalObjectStore.fault_hook`); tests raise or kill the process there to check that every
crash point leaves a state a retry finishes from."""


def prune(directory: str, stop: str) -> None:
    """Removes `directory` and its parents up to (not including) `stop` while they are empty."""
    while directory != stop and directory.startswith(stop + os.sep):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = os.path.dirname(directory)


class Sink(Protocol):
    """Where `_fill` streams bytes: a temp file, or a part's place in a staged upload."""

    size: int

    def write(self, data: bytes) -> None: ...


class TempFile:
    """A file being written in a staging dir; renamed into place by a commit.

    With `hashed=True` it keeps the MD5 (the etag, as S3's) and the SHA-256 (`stored_sha256`)
    of everything written, for `put`. Parts are not hashed: their etags are version tags (see
    local_parts) and `complete_multipart` hashes the assembled object itself.
    """

    def __init__(self, directory: str, *, hashed: bool = False) -> None:
        self.path = os.path.join(directory, f".tmp-{uuid.uuid4().hex}")
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        self.md5 = hashlib.md5(usedforsecurity=False) if hashed else None
        self.sha256 = hashlib.sha256() if hashed else None
        self.size = 0
        self._open = True

    def write(self, data: bytes) -> None:
        self._write_all(data)
        if self.md5 is not None:
            self.md5.update(data)
        if self.sha256 is not None:
            self.sha256.update(data)
        self.size += len(data)

    def append_range(self, path: str, offset: int, length: int) -> None:
        """Appends `length` bytes of `path` from `offset` (not hashed: multipart etags come
        from the parts)."""
        # In-kernel copy (a reflink on btrfs/XFS) where the platform has it.
        copy_range = getattr(os, "copy_file_range", None)
        with open(path, "rb", buffering=0) as src:
            copied = 0
            if copy_range is not None:
                try:
                    while copied < length:
                        n = copy_range(
                            src.fileno(),
                            self.fd,
                            min(COPY_CHUNK, length - copied),
                            offset + copied,
                        )
                        if n == 0:
                            break
                        copied += n
                except OSError:
                    pass  # e.g. EXDEV on old kernels: finish by hand
            while copied < length:
                data = os.pread(src.fileno(), min(WRITE_CHUNK, length - copied), offset + copied)
                if not data:
                    break
                self._write_all(data)
                copied += len(data)
        if copied != length:
            raise ObjectsError(f"{path} ended {length - copied} bytes early")
        self.size += copied

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            # Bounded writes: one huge bytes object is still written a piece at a time.
            view = view[os.write(self.fd, view[:WRITE_CHUNK]) :]

    def finish(self) -> os.stat_result:
        """Returns the fingerprint of the flushed, closed file."""
        try:
            os.fsync(self.fd)
            return os.fstat(self.fd)
        finally:
            self._close()

    def discard(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def _close(self) -> None:
        if self._open:
            self._open = False
            os.close(self.fd)
