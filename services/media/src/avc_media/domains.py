"""`allowed_domains`: which sites may embed a video.

Entries are hostnames (`example.com`) or wildcards (`*.example.com`). An exact entry matches that
host only; `*.example.com` matches every subdomain at any depth (`a.example.com`,
`a.b.example.com`) but not the apex `example.com` itself — list both to allow both (the same
rule as TLS certificates and Cloudflare Stream's allowed origins). Ports and schemes play no
part. The site is the host of the request's `Origin` header, or else of its `Referer`; with a
non-empty list and neither header (or `Origin: null`), the request is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import urlsplit

MAX_DOMAINS: Final = 100
_LABEL: Final = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_domain(value: str) -> str:
    """Returns the canonical form of one entry (lowercase, punycode); raises ValueError."""
    if not isinstance(value, str):
        raise ValueError("must be a string")
    text = value.strip().lower().rstrip(".")
    if not text:
        raise ValueError("must not be empty")
    wildcard = text.startswith("*.")
    host = text[2:] if wildcard else text
    if "://" in host or "/" in host or ":" in host or "*" in host:
        raise ValueError(
            f"{value!r} is not a hostname: use `example.com` or `*.example.com`, "
            "without scheme, port or path"
        )
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{value!r} is not a valid hostname") from None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{value!r} is not a valid hostname")
    if wildcard and len(labels) < 2:
        raise ValueError(f"{value!r} is too broad: a wildcard needs a domain such as *.example.com")
    return f"*.{host}" if wildcard else host


def normalize_domains(values: Iterable[str]) -> list[str]:
    """Returns the canonical entries, duplicates dropped, order kept; raises ValueError."""
    out = list(dict.fromkeys(normalize_domain(v) for v in values))
    if len(out) > MAX_DOMAINS:
        raise ValueError(f"at most {MAX_DOMAINS} domains")
    return out


def request_host(origin: str | None, referer: str | None) -> str | None:
    """Returns the embedding site's host: `Origin` first, else `Referer` (None when unknown)."""
    for header in (origin, referer):
        if header is None:
            continue
        header = header.strip()
        if not header or header == "null":
            # `Origin: null` (sandboxed iframes, file://) names no site: fall back to Referer.
            continue
        try:
            host = urlsplit(header).hostname
        except ValueError:
            return None
        return host.rstrip(".").lower() if host else None
    return None


def host_allowed(host: str | None, allowed: Sequence[str]) -> bool:
    """Returns whether `host` may embed a video restricted to `allowed` (empty: anywhere)."""
    if not allowed:
        return True
    if not host:
        return False
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    for entry in allowed:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and len(host) > len(entry) - 1:
                return True
        elif host == entry:
            return True
    return False
