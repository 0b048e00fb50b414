"""Prefixed, URL-safe, unguessable identifiers (`vid_…`, `upl_…`)."""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

# 16 random bytes = 128 bits, comfortably above the 96 bits the contract asks for.
_ID_BYTES: Final = 16
_ALPHABET: Final = "0123456789abcdefghijklmnopqrstuvwxyz"

PREFIXES: Final = frozenset(
    {"vid", "upl", "key", "whk", "dlv", "sub", "pre", "acct", "evt", "req", "att"}
)


def _base36(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = []
    while n:
        n, r = divmod(n, 36)
        out.append(_ALPHABET[r])
    return "".join(reversed(out)).rjust(25, "0")


def new_id(prefix: str) -> str:
    """Returns a new id such as `vid_3k9…` (128 random bits, base36, fixed length)."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    return f"{prefix}_{_base36(secrets.token_bytes(_ID_BYTES))}"


def derived_id(prefix: str, seed: str) -> str:
    """Returns the id that `seed` always maps to (same shape as `new_id`): lets two processes
    that never talk agree on one id, e.g. for an event both may (re)publish."""
    if prefix not in PREFIXES:
        raise ValueError(f"unknown id prefix {prefix!r}")
    digest = hashlib.sha256(f"avc:{prefix}:{seed}".encode()).digest()[:_ID_BYTES]
    return f"{prefix}_{_base36(digest)}"


def new_token(nbytes: int = 24) -> str:
    """Returns an opaque URL-safe token (embed tokens: 192 bits by default)."""
    return secrets.token_urlsafe(nbytes)


_ID_RE: Final = re.compile(r"^(?P<prefix>[a-z]{3,4})_[0-9a-z]{25}$")


def is_id(value: str, prefix: str) -> bool:
    """Returns whether `value` is well-formed for `prefix` (cheap pre-check before a lookup)."""
    m = _ID_RE.match(value)
    return bool(m and m.group("prefix") == prefix)
