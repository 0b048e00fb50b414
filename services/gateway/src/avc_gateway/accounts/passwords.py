"""Password hashing: argon2id through pwdlib, with a dummy hash for unknown emails."""

from __future__ import annotations

import asyncio
from typing import Final

from pwdlib import PasswordHash
from pwdlib.exceptions import UnknownHashError
from pwdlib.hashers.argon2 import Argon2Hasher

MIN_PASSWORD_LENGTH: Final = 10
# argon2 takes any length, but hashing megabytes per login attempt would be a cheap DoS.
MAX_PASSWORD_LENGTH: Final = 1024


class Passwords:
    """Hashes and verifies passwords off the event loop (argon2 is deliberately slow)."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._hash = PasswordHash(
            (Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism),)
        )
        # Same parameters as real hashes, so a login for an unknown email costs the same.
        self._dummy = self._hash.hash("avcaption-dummy-password")

    async def hash(self, password: str) -> str:
        """Returns the argon2id hash of `password`."""
        return await asyncio.to_thread(self._hash.hash, password)

    async def verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        """Returns (matches, new hash when the stored one uses outdated parameters)."""
        return await asyncio.to_thread(self._verify, password, password_hash)

    async def verify_dummy(self, password: str) -> None:
        """Spends the time of one verification, for callers with no account to check."""
        await asyncio.to_thread(self._verify, password, self._dummy)

    def _verify(self, password: str, password_hash: str) -> tuple[bool, str | None]:
        try:
            return self._hash.verify_and_update(password, password_hash)
        except UnknownHashError:
            return False, None
