"""The staging layout of the local adapter's multipart uploads (blocking calls; the adapter runs
them in its thread pool).

    .avc/multipart/<upload_id>/
        upload.json                  key, content type, creation time, `part_size` (if hinted)
        data                         hinted uploads: parts at their final offsets, (n-1)*part_size
        <n>.claim                    part n's place in `data` was taken, by the first write of n
        <n>.<etag>.<size>.slot       part n's current bytes are in `data` at its place
        <n>.<etag>.part              part n's current bytes are this file

Why: when the size of every part but the last is known up front (a chunked upload knows it), the
first write of each part goes straight to where it belongs in `data`, so completing an upload
whose parts all sit in place is a rename: every byte is written once, as by a plain file copy.
A part sent again goes to a file of its own, so the bytes already in place stay whole until the
new ones are (a failed re-send never damages the stored part); completing then copies. The first
write of a part claims its place with an O_EXCL file, so two writers never share a range.

Writers hold a shared `flock` on `data` while they write a place and publish its marker; the
in-place complete takes it exclusively before renaming `data` away, so no writer is ever left
holding the published object. `flock` locks belong to the open file, so they also exclude
threads of one process.

Part etags are random version tags, not the MD5 of the bytes as on S3: nothing reads them but
`complete`, to name which version of each part to use, and an MD5 would cost about 1.5 CPU
seconds per GiB uploaded (more than every other step of a chunk together, on a small VM).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import time
import uuid
from dataclasses import dataclass
from typing import Final

from avc_common.objects.base import MultipartNotFound, ObjectsError
from avc_common.objects.local_prefix_hash import Located

DATA: Final = "data"
_SLOT_MARKER = re.compile(r"(\d{5})\.([0-9a-f]{32})\.(\d+)\.slot")
_PART_FILE = re.compile(r"(\d{5})\.([0-9a-f]{32})\.part")
_WRITE_CHUNK: Final = 1024 * 1024
# How long an in-place complete waits for parts still being written before giving up (the
# caller retries); a write holds the lock only while its body streams in.
_EXCLUSIVE_WAIT_SECONDS: Final = 30.0
_EXCLUSIVE_POLL_SECONDS: Final = 0.05


@dataclass(frozen=True)
class StoredPart(Located):
    """The current version of one part, as found on disk."""

    mtime_ns: int
    in_place: bool


def part_file_name(number: int, etag: str) -> str:
    return f"{number:05d}.{etag}.part"


def slot_marker_name(number: int, etag: str, size: int) -> str:
    return f"{number:05d}.{etag}.{size}.slot"


def claim_name(number: int) -> str:
    return f"{number:05d}.claim"


def is_version_of(name: str, number: int) -> bool:
    """Returns whether `name` records a version of part `number` (a part file or a marker)."""
    return name.startswith(f"{number:05d}.") and name.endswith((".part", ".slot"))


def scan_parts(directory: str, part_size: int | None) -> dict[int, StoredPart]:
    """Returns part number -> its current version; the newest record wins a leftover race."""
    found: dict[int, StoredPart] = {}
    data = os.path.join(directory, DATA)
    with os.scandir(directory) as entries:
        for entry in entries:
            part = _PART_FILE.fullmatch(entry.name)
            slot = None if part else _SLOT_MARKER.fullmatch(entry.name)
            if part is None and (slot is None or part_size is None):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if part is not None:
                number = int(part.group(1))
                stored = StoredPart(
                    number=number,
                    etag=part.group(2),
                    path=entry.path,
                    offset=0,
                    size=st.st_size,
                    mtime_ns=st.st_mtime_ns,
                    in_place=False,
                )
            else:
                assert slot is not None
                assert part_size is not None
                number = int(slot.group(1))
                stored = StoredPart(
                    number=number,
                    etag=slot.group(2),
                    path=data,
                    offset=(number - 1) * part_size,
                    size=int(slot.group(3)),
                    mtime_ns=st.st_mtime_ns,
                    in_place=True,
                )
            known = found.get(number)
            if known is None or stored.mtime_ns > known.mtime_ns:
                found[number] = stored
    return found


def in_place_layout(parts: list[StoredPart], part_size: int | None) -> bool:
    """Returns whether `parts` (in order) are exactly `data`'s first bytes: parts 1..N, all in
    place, every one but the last `part_size` long."""
    if part_size is None:
        return False
    last = len(parts) - 1
    for index, part in enumerate(parts):
        if part.number != index + 1 or not part.in_place:
            return False
        if part.size > part_size or (index < last and part.size != part_size):
            return False
    return True


def claim_place(directory: str, number: int) -> bool:
    """Returns whether this caller took part `number`'s place in `data` (its first write)."""
    try:
        fd = os.open(
            os.path.join(directory, claim_name(number)),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
            0o666,
        )
    except FileExistsError:
        return False
    except FileNotFoundError:
        raise MultipartNotFound("the multipart upload was completed or aborted") from None
    os.close(fd)
    return True


def release_place(directory: str, number: int) -> None:
    """Gives part `number`'s place back after a failed first write (nothing refers to it)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(directory, claim_name(number)))


def _check_still_staged(fd: int, directory: str) -> None:
    """Raises MultipartNotFound if `data` (open as `fd`) was completed or aborted meanwhile."""
    try:
        current = os.stat(os.path.join(directory, DATA))
    except FileNotFoundError:
        raise MultipartNotFound("the multipart upload was completed or aborted") from None
    if current.st_ino != os.fstat(fd).st_ino:
        raise MultipartNotFound("the multipart upload was completed or aborted")


def new_part_etag() -> str:
    """Returns a fresh version tag for a stored part (32 hex digits, the shape of an MD5)."""
    return uuid.uuid4().hex


class PlaceWriter:
    """Writes part `number` at its place in `data`, under a shared lock."""

    def __init__(self, directory: str, number: int, part_size: int) -> None:
        self.directory = directory
        self.number = number
        self.offset = (number - 1) * part_size
        self.size = 0
        try:
            self.fd = os.open(os.path.join(directory, DATA), os.O_WRONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise MultipartNotFound("the multipart upload was completed or aborted") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            _check_still_staged(self.fd, directory)
        except BaseException:
            os.close(self.fd)
            raise
        self._open = True

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view[:_WRITE_CHUNK], self.offset + self.size)
            self.size += n
            view = view[n:]

    def sync(self) -> None:
        """Makes the bytes durable (before `publish`, outside any process-wide lock)."""
        os.fdatasync(self.fd)

    def publish(self) -> str:
        """Publishes the part's marker (after `sync`); returns its etag."""
        etag = new_part_etag()
        marker = os.path.join(self.directory, slot_marker_name(self.number, etag, self.size))
        try:
            # Still under the shared lock: an in-place complete cannot have taken `data` away.
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666))
        except FileNotFoundError:
            raise MultipartNotFound("the multipart upload was completed or aborted") from None
        return etag

    def close(self) -> None:
        if self._open:
            self._open = False
            os.close(self.fd)  # also drops the lock


class ExclusiveData:
    """`data` locked against writers, for an in-place complete (a context manager)."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, DATA)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)  # FileNotFoundError: see caller
        try:
            self._lock(directory)
        except BaseException:
            os.close(self.fd)
            raise

    def _lock(self, directory: str) -> None:
        deadline = time.monotonic() + _EXCLUSIVE_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
            if time.monotonic() > deadline:
                raise ObjectsError("parts of this upload are still being written; try again")
            time.sleep(_EXCLUSIVE_POLL_SECONDS)
        _check_still_staged(self.fd, directory)

    def __enter__(self) -> ExclusiveData:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
