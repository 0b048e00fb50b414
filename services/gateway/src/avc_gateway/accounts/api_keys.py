"""API keys: `avc_` + 64 lowercase hex, stored only as HMAC-SHA256(api_key_secret, key).

A keyed hash (not a plain SHA-256) means a leaked database alone does not let anyone test
guessed keys; the key space (256 bits) makes a slow password hash unnecessary, so a lookup
costs one HMAC and one indexed read.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import ClassVar, Final

from avc_common.errors import Unauthorized
from avc_common.logging import get_logger

KEY_PREFIX: Final = "avc_"
DISPLAY_PREFIX_LENGTH: Final = 12  # `avc_1a2b3c4d`: enough to tell keys apart, useless to guess
_KEY_RE: Final = re.compile(r"avc_[0-9a-f]{64}")

log = get_logger(__name__)


class InvalidApiKey(Unauthorized):
    code: ClassVar[str] = "invalid_api_key"
    default_message: ClassVar[str] = "The API key is not valid."


def new_api_key() -> str:
    """Returns a fresh key: `avc_` + 256 random bits as lowercase hex."""
    return KEY_PREFIX + secrets.token_hex(32)


def is_well_formed(key: str) -> bool:
    """Returns whether `key` looks like an API key (checked before any lookup)."""
    return _KEY_RE.fullmatch(key) is not None


def display_prefix(key: str) -> str:
    """Returns the part of a key shown in listings."""
    return key[:DISPLAY_PREFIX_LENGTH]


class ApiKeyHasher:
    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def hash(self, key: str) -> str:
        """Returns the hex HMAC-SHA256 of `key`, the only form in which keys are stored."""
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()


Flush = Callable[[str, datetime], Awaitable[None]]


class LastUsedTracker:
    """Remembers when each key was last used and writes it at most once per key per interval,
    so authenticating a request never costs a database write."""

    def __init__(self, flush: Flush, *, interval_seconds: float) -> None:
        self._flush = flush
        self.interval_seconds = interval_seconds
        self._pending: dict[str, datetime] = {}

    def touch(self, key_id: str, at: datetime) -> None:
        """Records a use of `key_id` (in memory only)."""
        current = self._pending.get(key_id)
        if current is None or at > current:
            self._pending[key_id] = at

    def pending(self, key_id: str) -> datetime | None:
        """Returns the last use not written yet, if any."""
        return self._pending.get(key_id)

    async def flush(self) -> int:
        """Writes every pending use; returns how many keys were written."""
        batch, self._pending = self._pending, {}
        unwritten = dict(batch)
        try:
            for key_id, at in batch.items():
                try:
                    await self._flush(key_id, at)
                except Exception as exc:
                    # Kept for the next round; a late last_used_at is not worth failing over.
                    log.warning("last_used_flush_failed", key_id=key_id, exc_info=exc)
                    continue
                del unwritten[key_id]
        finally:
            # Also when cancelled mid-way: what was not written is tried again.
            for key_id, at in unwritten.items():
                self.touch(key_id, at)
        return len(batch) - len(unwritten)

    async def run(self) -> None:
        """Flushes every interval until cancelled."""
        while True:
            await asyncio.sleep(self.interval_seconds)
            await self.flush()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Runs the periodic flush in the background; flushes once more on the way out."""
        task = asyncio.create_task(self.run(), name="api-key-last-used-flush")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self.flush()
