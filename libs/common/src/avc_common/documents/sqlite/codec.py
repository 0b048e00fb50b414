"""How documents are stored as JSON text in SQLite.

Datetimes become strings marked with U+10FFFF, the last code point: its UTF-8 bytes sort after
every other string, so all datetimes form one block that sorts and compares chronologically
(fixed-width ISO form, millisecond precision like BSON) without being confused with text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from avc_common.timeutil import ensure_utc

MARK: Final = "\U0010ffff"


def encode(value: Any) -> Any:
    """Returns `value` as JSON-ready data, datetimes as marked UTC strings (ms precision)."""
    if isinstance(value, str):
        if value.startswith(MARK):
            raise ValueError("strings may not start with U+10FFFF (reserved for datetimes)")
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, datetime):
        v = ensure_utc(value)
        return (
            f"{MARK}{v.year:04d}-{v.month:02d}-{v.day:02d}T{v.hour:02d}:{v.minute:02d}:"
            f"{v.second:02d}.{v.microsecond // 1000:03d}Z"
        )
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"document keys must be strings, not {type(key).__name__}")
            out[key] = encode(item)
        return out
    if isinstance(value, list | tuple):
        return [encode(item) for item in value]
    raise TypeError(f"cannot store a {type(value).__name__} in a document")


def decode(value: Any) -> Any:
    """Returns stored JSON data as Python values, marked strings as aware UTC datetimes."""
    if isinstance(value, str):
        if value.startswith(MARK):
            return datetime.fromisoformat(value[1:-1]).replace(tzinfo=UTC)
        return value
    if isinstance(value, dict):
        return {key: decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode(item) for item in value]
    return value


def dumps(encoded: Any) -> str:
    """Returns compact JSON text for already-encoded data."""
    return json.dumps(encoded, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def loads(text: str) -> Any:
    """Returns the encoded data stored as `text` (datetimes still marked)."""
    return json.loads(text)


def id_key(encoded_id: Any) -> str:
    """Returns the primary-key text for an `_id`: its JSON, so 5 and "5" stay distinct."""
    return dumps(encoded_id)
