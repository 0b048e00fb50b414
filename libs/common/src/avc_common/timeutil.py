"""RFC 3339 UTC time helpers: every timestamp the API shows looks like `2026-11-26T18:00:00Z`."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Returns the current aware UTC time, truncated to milliseconds (MongoDB's precision)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def ensure_utc(value: datetime) -> datetime:
    """Returns `value` as aware UTC; naive datetimes are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_rfc3339(value: datetime) -> str:
    """Returns `2026-11-26T18:00:00Z` (or with `.123` milliseconds when there are any)."""
    value = ensure_utc(value)
    # isoformat, not strftime: %Y does not zero-pad years before 1000 on glibc.
    spec = "milliseconds" if value.microsecond // 1000 else "seconds"
    return value.isoformat(timespec=spec).replace("+00:00", "Z")


def parse_rfc3339(text: str) -> datetime:
    """Returns the aware UTC datetime for an RFC 3339 string; raises ValueError otherwise."""
    if not text or "T" not in text.upper():
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"RFC 3339 timestamps need an offset: {text!r}")
    return parsed.astimezone(UTC)
