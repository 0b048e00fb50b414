"""What the gateway passes on to a service and back: headers and the query string."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final
from urllib.parse import unquote_plus

from avc_common.internal_auth import INTERNAL_TOKEN_HEADER
from avc_common.web import REQUEST_ID_HEADER

RawHeaders = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1: meaningful for one connection only. `Proxy-*` are dropped by prefix.
_HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
# Credentials stay at the gateway (the service gets the internal token instead); request id
# and X-Forwarded-* are set by the gateway; Host comes from the service URL; Expect is handled
# by the gateway's own server.
_NOT_FORWARDED: Final = frozenset(
    {
        b"x-api-key",
        b"authorization",
        INTERNAL_TOKEN_HEADER.lower().encode(),
        REQUEST_ID_HEADER.lower().encode(),
        b"host",
        b"expect",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    }
)
# The gateway's server writes its own.
_NOT_RETURNED: Final = frozenset({b"date", b"server", REQUEST_ID_HEADER.lower().encode()})
_API_KEY_PARAM: Final = "api_key"


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Returns the header names a `Connection` header marks as hop-by-hop."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tokens


def _end_to_end(headers: Sequence[tuple[bytes, bytes]], drop: frozenset[bytes]) -> RawHeaders:
    named = _connection_tokens(headers)
    out: RawHeaders = []
    for name, value in headers:
        key = name.lower()
        if key in _HOP_BY_HOP or key in named or key in drop or key.startswith(b"proxy-"):
            continue
        out.append((key, value))
    return out


def upstream_request_headers(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    request_id: str | None,
    internal_token: str | None,
    client_host: str | None,
    scheme: str,
) -> RawHeaders:
    """Returns the headers to send a service for a client request with these `headers`."""
    out = _end_to_end(headers, _NOT_FORWARDED)
    forwarded_for = [v for k, v in headers if k.lower() == b"x-forwarded-for"]
    if client_host:
        forwarded_for.append(client_host.encode("latin-1"))
    if forwarded_for:
        out.append((b"x-forwarded-for", b", ".join(forwarded_for)))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    host = next((v for k, v in headers if k.lower() == b"host"), None)
    if host:
        out.append((b"x-forwarded-host", host))
    if request_id:
        out.append((REQUEST_ID_HEADER.lower().encode(), request_id.encode("latin-1")))
    if internal_token:
        out.append((INTERNAL_TOKEN_HEADER.lower().encode(), internal_token.encode("latin-1")))
    return out


def client_response_headers(headers: Sequence[tuple[bytes, bytes]]) -> RawHeaders:
    """Returns the service's response headers the client gets (Content-Length kept)."""
    return _end_to_end(headers, _NOT_RETURNED)


def without_api_key(query: bytes) -> bytes:
    """Returns the query string minus every `api_key` parameter, the rest byte for byte.

    The key is a credential the gateway has checked; forwarding it would put it in the
    service's URL (and so, potentially, its logs)."""
    if not query:
        return query
    kept = [part for part in query.split(b"&") if part and not _is_api_key(part)]
    return b"&".join(kept)


def _is_api_key(part: bytes) -> bool:
    name = part.split(b"=", 1)[0].decode("latin-1")
    return unquote_plus(name).strip().lower() == _API_KEY_PARAM


def has_body(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    """Returns whether a request with these headers carries a body (RFC 9112 §6.3)."""
    for name, value in headers:
        key = name.lower()
        if key == b"transfer-encoding":
            return True
        if key == b"content-length":
            return value.strip() not in (b"", b"0")
    return False
