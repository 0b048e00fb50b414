"""The objects port: blob storage addressed by `/`-separated keys.

Adapters (local directory, S3/MinIO) implement `ObjectStore`; everything shared by them — errors,
key rules, range arithmetic, chunked reading — lives here so both behave the same.
"""

from __future__ import annotations

import builtins
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self

ByteSource = bytes | AsyncIterable[bytes]

CHUNK_SIZE = 1024 * 1024
"""Largest chunk an `ObjectReader` yields."""

MAX_KEY_BYTES = 1024
MAX_SEGMENT_BYTES = 255
MAX_PART_NUMBER = 10_000
MAX_PART_SIZE = 5 * 1024**3  # S3's limit for one part

RESERVED_SEGMENT = ".avc"
"""First key segment reserved for the local adapter's bookkeeping (sidecars, staging, temp files).
Rejected by every adapter so that keys stay portable between them."""

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class ObjectsError(Exception):
    """Base class of every error the objects port raises."""


class ObjectNotFound(ObjectsError):
    """No object with this key."""


class InvalidKey(ObjectsError, ValueError):
    """The key breaks the key rules (see `validate_key`)."""


class MultipartNotFound(ObjectsError):
    """No multipart upload with this id for this key (never created, completed or aborted)."""


class InvalidPart(ObjectsError):
    """`complete_multipart` named a part that was not uploaded (or with another etag), or the
    backend refused the part list (S3: every part but the last must be at least 5 MiB)."""


class RangeNotSatisfiable(ObjectsError):
    """The requested range starts at or beyond the end of the object. `size` is the object's size
    when known, for a `Content-Range: bytes */size` header."""

    def __init__(self, message: str, *, size: int | None = None) -> None:
        super().__init__(message)
        self.size = size


class SizeMismatch(ObjectsError):
    """The data did not have the declared size; nothing was stored."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    content_type: str
    last_modified: datetime


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    etag: str
    """Names this version of the part (32 hex digits, quotes allowed): a part sent again gets a
    new one. S3 gives the MD5 of the part's bytes; the local adapter a random tag (see
    local_parts). Opaque to callers: only `complete_multipart` reads it."""
    size: int


def validate_key(key: str) -> str:
    """Returns `key` unchanged if it is a valid relative `/`-separated key; raises InvalidKey."""
    if not isinstance(key, str) or not key:
        raise InvalidKey("object key is empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InvalidKey(f"object key is longer than {MAX_KEY_BYTES} bytes")
    if "\\" in key:
        raise InvalidKey(f"object key contains a backslash: {key!r}")
    if _CONTROL_CHARS.search(key):
        raise InvalidKey(f"object key contains a control character: {key!r}")
    if key.startswith("/"):
        raise InvalidKey(f"object key must be relative: {key!r}")
    if key.endswith("/"):
        raise InvalidKey(f"object key must not end with '/': {key!r}")
    segments = key.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise InvalidKey(f"object key has an empty, '.' or '..' segment: {key!r}")
        # Filesystems cap a name at 255 bytes; enforced everywhere so keys stay portable.
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise InvalidKey(f"object key has a segment longer than {MAX_SEGMENT_BYTES} bytes")
    if segments[0] == RESERVED_SEGMENT:
        raise InvalidKey(f"object keys must not start with {RESERVED_SEGMENT!r}: {key!r}")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKey(f"object key is not valid UTF-8: {key!r}") from None
    return key


def validate_prefix(prefix: str) -> str:
    """Returns the prefix without its trailing `/` ("" means everything); raises InvalidKey.

    Prefixes match whole segments: `a/b` (or `a/b/`) covers `a/b` and `a/b/...`, never `a/bc`.
    """
    if prefix == "":
        return ""
    stripped = prefix[:-1] if prefix.endswith("/") else prefix
    return validate_key(stripped)


def key_has_prefix(key: str, prefix: str) -> bool:
    """Returns whether `key` is under the (validated, stripped) `prefix`."""
    return prefix == "" or key == prefix or key.startswith(prefix + "/")


def validate_part_size(part_size: int | None) -> int | None:
    """Returns the `part_size` hint unchanged; raises ValueError when it is not 1..5 GiB."""
    if part_size is not None and not (
        isinstance(part_size, int) and 0 < part_size <= MAX_PART_SIZE
    ):
        raise ValueError(f"part_size must be 1..{MAX_PART_SIZE}, got {part_size!r}")
    return part_size


def validate_part_number(part_number: int) -> int:
    """Returns `part_number` if it is within 1..10000; raises ValueError."""
    if isinstance(part_number, bool) or not 1 <= part_number <= MAX_PART_NUMBER:
        raise ValueError(f"part_number must be within 1..{MAX_PART_NUMBER}, got {part_number!r}")
    return part_number


def normalize_etag(etag: str) -> str:
    """Returns the etag without the quotes S3 puts around it."""
    return etag.strip().strip('"')


def sorted_parts(parts: Sequence[PartInfo]) -> list[PartInfo]:
    """Returns the parts in part order; raises InvalidPart for none or duplicate numbers."""
    if not parts:
        raise InvalidPart("a multipart upload needs at least one part")
    ordered = sorted(parts, key=lambda p: p.part_number)
    for part in ordered:
        validate_part_number(part.part_number)
    numbers = [p.part_number for p in ordered]
    if len(set(numbers)) != len(numbers):
        raise InvalidPart("a part number is listed twice")
    return ordered


def check_range(offset: int, length: int | None) -> None:
    """Raises ValueError for a negative offset or a non-positive length."""
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if length is not None and length < 1:
        raise ValueError(f"length must be >= 1, got {length}")


def resolve_range(size: int, offset: int, length: int | None) -> tuple[int, int]:
    """Returns (start, length) of the bytes to read, clamped to the object like HTTP does.

    A plain read (offset 0, no length) always works, even on an empty object; any other range must
    start inside the object, else RangeNotSatisfiable (HTTP 416).
    """
    check_range(offset, length)
    if offset == 0 and length is None:
        return 0, size
    if offset >= size:
        raise RangeNotSatisfiable(
            f"range starts at {offset} but the object has {size} bytes", size=size
        )
    available = size - offset
    return offset, available if length is None else min(length, available)


async def iter_source(data: ByteSource) -> AsyncGenerator[bytes, None]:
    """Yields the chunks of `data`, skipping empty ones."""
    if isinstance(data, bytes | bytearray | memoryview):
        if data:
            yield bytes(data)
        return
    async for chunk in data:
        if chunk:
            yield chunk


class ObjectReader(ABC):
    """A streamed read of `length` bytes from `start` of one object.

    Iterate it for chunks of at most `CHUNK_SIZE` bytes; `async with` or `aclose()` releases the
    file handle / connection (reading to the end releases it too).
    """

    def __init__(self, info: ObjectInfo, start: int, length: int) -> None:
        self.info = info
        self.start = start
        self.length = length
        self._remaining = length
        self._closed = False

    @abstractmethod
    async def _read(self, max_bytes: int) -> bytes:
        """Returns up to `max_bytes` (> 0) next bytes; b"" only at a premature end."""

    @abstractmethod
    async def _release(self) -> None:
        """Releases the underlying handle; called once."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._closed or self._remaining <= 0:
            await self.aclose()
            raise StopAsyncIteration
        try:
            chunk = await self._read(min(CHUNK_SIZE, self._remaining))
        except BaseException:
            await self.aclose()
            raise
        if not chunk:
            await self.aclose()
            raise ObjectsError(
                f"object {self.info.key!r} ended {self._remaining} bytes early (changed or cut?)"
            )
        self._remaining -= len(chunk)
        return chunk

    async def read(self) -> bytes:
        """Returns every remaining byte of this read; only for small objects."""
        return b"".join([chunk async for chunk in self])

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._release()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


class ObjectStore(ABC):
    """Blob storage. Keys are validated by `validate_key`; prefixes match whole segments."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Prepares the backend (e.g. creates the bucket); idempotent."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Releases connections and threads."""

    @abstractmethod
    async def ping(self) -> None:
        """Returns when the backend is usable; raises ObjectsError otherwise (for /readyz)."""

    @abstractmethod
    async def put(
        self,
        key: str,
        data: ByteSource,
        *,
        size: int | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Returns the info of the object stored from `data`, streamed and atomically replacing
        any previous one; with `size` given, other sizes raise SizeMismatch and store nothing."""

    @abstractmethod
    async def get(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectReader:
        """Returns a streamed reader of the object's bytes `offset`.. (`length` clamped to the end);
        raises ObjectNotFound, or RangeNotSatisfiable when the range starts past the end."""

    async def read_bytes(self, key: str) -> bytes:
        """Returns the whole object; only for small objects."""
        async with await self.get(key) as reader:
            return await reader.read()

    @abstractmethod
    async def stat(self, key: str) -> ObjectInfo:
        """Returns the object's info; raises ObjectNotFound."""

    async def exists(self, key: str) -> bool:
        """Returns whether the object exists."""
        try:
            await self.stat(key)
        except ObjectNotFound:
            return False
        return True

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Deletes the object if it exists."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Returns how many objects under `prefix` were deleted ("" deletes everything)."""

    @abstractmethod
    async def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Returns every object under `prefix`, recursively, sorted by key."""

    @abstractmethod
    async def create_multipart(
        self,
        key: str,
        *,
        content_type: str = "application/octet-stream",
    ) -> str:
        """Returns the id of a new multipart upload that will become `key`. (Placing parts
        where they end up is an optional capability: `capabilities.PlacedParts`.)"""

    @abstractmethod
    async def put_part(
        self, key: str, upload_id: str, part_number: int, data: ByteSource, *, size: int
    ) -> PartInfo:
        """Returns the stored part (1..10000); re-sending a number replaces that part. Parts may
        arrive in any order and concurrently. Raises MultipartNotFound, SizeMismatch."""

    @abstractmethod
    async def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        """Returns the uploaded parts sorted by part number; raises MultipartNotFound."""

    @abstractmethod
    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo]
    ) -> ObjectInfo:
        """Returns the info of the object made of `parts` concatenated in part-number order;
        raises MultipartNotFound, InvalidPart."""

    @abstractmethod
    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Drops the upload and its parts; idempotent."""
