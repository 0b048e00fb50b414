"""Request bodies as bounded streams: chunk bodies checked while they pass, and a pull-based
multipart/form-data reader for the direct upload. Nothing here holds more than about
`COALESCE_BYTES` of a body at a time; no temporary files."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import anyio.to_thread
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from avc_common.errors import AppError, PayloadTooLarge
from avc_upload.errors import ChecksumMismatch, ChunkSizeMismatch, InvalidForm

COALESCE_BYTES: Final = 1024 * 1024
"""Servers hand bodies over in pieces of ~64 KiB; storage adapters cost a thread hop per piece,
so pieces are gathered up to 1 MiB before they are passed on (4 parallel chunks hold ~4 MiB)."""
# Below this, hashing on the event loop is cheaper than a hop to a worker thread.
_HASH_IN_THREAD_BYTES: Final = 256 * 1024
_MAX_FORM_PARTS: Final = 16


async def hash_update(digest: Any, data: bytes) -> None:
    """Feeds `data` to `digest`; big pieces in a worker thread (hashlib releases the GIL), so
    hashing does not stall other requests on the event loop."""
    if len(data) >= _HASH_IN_THREAD_BYTES:
        await anyio.to_thread.run_sync(digest.update, data)
    else:
        digest.update(data)


async def coalesce(
    source: AsyncIterable[bytes], size: int = COALESCE_BYTES
) -> AsyncGenerator[bytes, None]:
    """Yields the bytes of `source` in pieces of about `size` (the last one may be shorter);
    each byte is copied at most once (by the join)."""
    pending: list[bytes] = []
    held = 0
    async for piece in source:
        if not piece:
            continue
        if not pending and len(piece) >= size:
            yield piece
            continue
        pending.append(piece)
        held += len(piece)
        if held >= size:
            yield b"".join(pending)
            pending.clear()
            held = 0
    if pending:
        yield b"".join(pending)


async def checked_chunk(
    source: AsyncIterable[bytes], *, index: int, expected: int, sha256: str | None
) -> AsyncGenerator[bytes, None]:
    """Yields the chunk body while counting it (and hashing it when `sha256` is given).

    Raises ChunkSizeMismatch as soon as the body runs past `expected` (the rest is not read)
    or ends short of it, and ChecksumMismatch when the digest differs. Both are raised *instead
    of ending the stream*, so the storage adapter reading it never commits the part: the local
    adapter deletes its temp file, the S3 adapter (which gathers a part before sending it) never
    sends it. A part stored earlier under the same number stays as it was.
    """
    digest = hashlib.sha256() if sha256 is not None else None
    received = 0
    async for piece in coalesce(source):
        received += len(piece)
        if received > expected:
            raise ChunkSizeMismatch(
                f"Chunk {index} must be {expected} bytes; more were sent.",
                details={"expected_bytes": expected},
            )
        if digest is not None:
            await hash_update(digest, piece)
        yield piece
    if received != expected:
        raise ChunkSizeMismatch(
            f"Chunk {index} must be {expected} bytes; {received} were sent.",
            details={"expected_bytes": expected, "received_bytes": received},
        )
    if digest is not None and digest.hexdigest() != sha256:
        raise ChecksumMismatch(
            f"Chunk {index}'s SHA-256 is {digest.hexdigest()}, not the {sha256} of "
            "X-Chunk-SHA256; it was not stored. Send it again."
        )


@dataclass
class Measured:
    """What `measured` saw pass: the size and SHA-256 of everything, in order."""

    size: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    @property
    def sha256(self) -> str:
        return str(self.digest.hexdigest())


async def measured(
    source: AsyncIterable[bytes],
    tally: Measured,
    *,
    max_bytes: int,
    too_large: Callable[[], AppError],
) -> AsyncGenerator[bytes, None]:
    """Yields `source` in ~1 MiB pieces, hashing and counting into `tally`; raises
    `too_large()` as soon as more than `max_bytes` went by."""
    async for piece in coalesce(source):
        tally.size += len(piece)
        if tally.size > max_bytes:
            raise too_large()
        await hash_update(tally.digest, piece)
        yield piece


async def read_limited(source: AsyncIterable[bytes], *, limit: int) -> bytes:
    """Returns the whole (small) body; 413 when it is longer than `limit`."""
    body = bytearray()
    async for piece in source:
        body += piece
        if len(body) > limit:
            raise PayloadTooLarge(f"This request body must be at most {limit} bytes.")
    return bytes(body)


@dataclass(frozen=True)
class FormPart:
    """The headers of one field of a multipart/form-data body."""

    name: str | None
    filename: str | None
    content_type: str | None


def _decode_header(raw: bytes) -> str:
    # Browsers and curl send UTF-8 filenames as raw bytes in the quoted string.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def form_boundary(content_type: str | None) -> bytes | None:
    """Returns the boundary of a multipart/form-data Content-Type, else None."""
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        return None
    return boundary


class FormReader:
    """Reads a multipart/form-data body field by field, pulling the body only as fast as the
    caller consumes a field's data (python-multipart's streaming parser underneath)."""

    def __init__(self, source: AsyncIterable[bytes], boundary: bytes) -> None:
        self._source: AsyncIterator[bytes] = source.__aiter__()
        self._events: deque[tuple[str, Any]] = deque()
        self._exhausted = False
        self._ended = False
        self._parts = 0
        self._name = bytearray()
        self._value = bytearray()
        self._headers: dict[str, bytes] = {}
        try:
            self._parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except FormParserError as exc:
            raise InvalidForm(f"The form's boundary is not usable: {exc}") from None

    # -- parser callbacks ----------------------------------------------------------------------

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[bytes(self._name).decode("latin-1").strip().lower()] = bytes(self._value)
        self._name.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        self._events.append(("part", self._headers))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._events.append(("data", data[start:end]))

    def _on_part_end(self) -> None:
        self._events.append(("end", None))

    def _on_end(self) -> None:
        self._ended = True

    # -- pulling -------------------------------------------------------------------------------

    async def _next_event(self) -> tuple[str, Any] | None:
        while not self._events:
            if self._exhausted:
                return None
            try:
                chunk = await anext(self._source)
            except StopAsyncIteration:
                self._exhausted = True
                continue
            if not chunk:
                continue
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise InvalidForm(f"The multipart/form-data body is malformed: {exc}") from None
        return self._events.popleft()

    async def next_part(self) -> FormPart | None:
        """Returns the next field's headers (skipping what is left of the current field's
        data), or None after the closing boundary."""
        while (event := await self._next_event()) is not None:
            if event[0] != "part":
                continue
            self._parts += 1
            if self._parts > _MAX_FORM_PARTS:
                raise InvalidForm(f"The form has more than {_MAX_FORM_PARTS} fields.")
            headers: dict[str, bytes] = event[1]
            _, options = parse_options_header(headers.get("content-disposition"))
            name = options.get(b"name")
            filename = options.get(b"filename")
            content_type = headers.get("content-type")
            return FormPart(
                name=_decode_header(name) if name is not None else None,
                filename=_decode_header(filename) if filename is not None else None,
                content_type=content_type.decode("latin-1").strip() if content_type else None,
            )
        if not self._ended:
            raise InvalidForm("The form ended before its closing boundary (body cut short?).")
        return None

    async def part_data(self) -> AsyncGenerator[bytes, None]:
        """Yields the current field's data as it arrives."""
        while (event := await self._next_event()) is not None:
            kind, value = event
            if kind == "data":
                yield value
            elif kind == "end":
                return
        raise InvalidForm("The form ended in the middle of a field (body cut short?).")
