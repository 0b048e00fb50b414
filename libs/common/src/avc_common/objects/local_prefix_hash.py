"""SHA-256 of staged uploads, taken in the background as their parts land.

A chunked upload's parts arrive in any order, but SHA-256 is sequential: the object's hash can
only be taken once the bytes before a part are known. So each hinted multipart upload has a
*prefix*: the digest of its parts 1..k, in order. Whenever a part is stored, a background thread
extends every prefix as far as the parts stored so far allow, reading each part once from the
page cache right after it was written. `complete` takes the prefix, checks it covers exactly the
versions of the parts it was asked to use, and hashes only what is left (usually nothing): on
big files complete no longer spends seconds hashing while the client waits.

Only what this process saw is known: parts stored by another process (replicas sharing a
volume), a restart, or a prefix given up to bound memory (too many uploads at once, or too many
parts waiting for an earlier one) just leave more for `complete` to hash.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

_READ_BYTES: Final = 4 * 1024 * 1024
# Bounds memory (a few hundred bytes per part waiting): at most this many uploads, each with at
# most this many parts waiting for an earlier one; past that, complete hashes the rest itself.
_MAX_UPLOADS: Final = 256
_MAX_PENDING: Final = 1024
_STOP: Final = ""


@dataclass(frozen=True)
class Located:
    """Where one stored version of a part is: `size` bytes of `path` from `offset`."""

    number: int
    etag: str
    path: str
    offset: int
    size: int


@dataclass
class Prefix:
    """The SHA-256 of parts 1..len(hashed), in order, with the versions it covers."""

    digest: Any = field(default_factory=hashlib.sha256)
    hashed: list[tuple[int, str]] = field(default_factory=list)
    pending: dict[int, Located] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    taken: bool = False
    broken: bool = False


def hash_range(digest: Any, path: str, offset: int, size: int) -> None:
    """Feeds `size` bytes of `path` from `offset` to `digest`; raises OSError if they are gone."""
    buffer = memoryview(bytearray(min(_READ_BYTES, max(size, 1))))
    with open(path, "rb", buffering=0) as f:
        done = 0
        while done < size:
            n = os.preadv(f.fileno(), [buffer[: min(len(buffer), size - done)]], offset + done)
            if n == 0:
                raise OSError(f"{path} ended {size - done} bytes early")
            digest.update(buffer[:n])
            done += n


class PrefixHashes:
    """The running prefixes of one store's staged uploads, keyed by staging directory."""

    def __init__(self, max_uploads: int = _MAX_UPLOADS) -> None:
        self._max_uploads = max_uploads
        self._lock = threading.Lock()
        self._prefixes: OrderedDict[str, Prefix] = OrderedDict()
        self._wake: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def stored(self, directory: str, part: Located) -> None:
        """Records that `part` is now the current version of its number, and wakes the hasher."""
        with self._lock:
            prefix = self._prefixes.get(directory)
            if prefix is None:
                prefix = self._prefixes[directory] = Prefix()
                while len(self._prefixes) > self._max_uploads:
                    self._prefixes.popitem(last=False)
            self._prefixes.move_to_end(directory)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="avc-objects-prefix-sha256", daemon=True
                )
                self._thread.start()
        with prefix.lock:
            if part.number <= len(prefix.hashed):
                # An already hashed part was replaced: this prefix can no longer be used.
                prefix.broken = True
            elif len(prefix.pending) >= _MAX_PENDING and part.number not in prefix.pending:
                prefix.broken = True
                prefix.pending.clear()
            else:
                prefix.pending[part.number] = part
        self._wake.put(directory)

    def take(self, directory: str) -> Prefix | None:
        """Detaches the prefix of `directory` for a complete (waits for a part being hashed)."""
        with self._lock:
            prefix = self._prefixes.pop(directory, None)
        if prefix is None:
            return None
        with prefix.lock:
            prefix.taken = True
            return None if prefix.broken else prefix

    def forget(self, directory: str) -> None:
        with self._lock:
            prefix = self._prefixes.pop(directory, None)
        if prefix is not None:
            with prefix.lock:
                prefix.taken = True

    def close(self) -> None:
        """Stops the hasher thread (prefixes are dropped: complete hashes what it must)."""
        with self._lock:
            thread, self._thread = self._thread, None
            self._prefixes.clear()
        if thread is not None:
            self._wake.put(_STOP)
            thread.join(timeout=10)

    def _run(self) -> None:
        while (directory := self._wake.get()) != _STOP:
            with self._lock:
                prefix = self._prefixes.get(directory)
            if prefix is not None:
                self._extend(prefix)

    @staticmethod
    def _extend(prefix: Prefix) -> None:
        """Hashes the parts that follow the prefix, one at a time, while they are known."""
        while True:
            # One part per lock hold, so `take` never waits for more than one part.
            with prefix.lock:
                if prefix.taken or prefix.broken:
                    return
                part = prefix.pending.pop(len(prefix.hashed) + 1, None)
                if part is None:
                    return
                try:
                    hash_range(prefix.digest, part.path, part.offset, part.size)
                except OSError:
                    prefix.broken = True  # superseded and deleted, or the upload is gone
                    return
                prefix.hashed.append((part.number, part.etag))


def finish_sha256(prefix: Prefix | None, parts: Sequence[Located]) -> str:
    """Returns the SHA-256 of `parts` concatenated in order, reusing `prefix` when it covers
    exactly the first of them (the same numbers and versions)."""
    digest: Any = None
    rest = parts
    if prefix is not None:
        covered = [(p.number, p.etag) for p in parts[: len(prefix.hashed)]]
        if covered == prefix.hashed:
            digest, rest = prefix.digest, parts[len(prefix.hashed) :]
    if digest is None:
        digest = hashlib.sha256()
    for part in rest:
        hash_range(digest, part.path, part.offset, part.size)
    return str(digest.hexdigest())
