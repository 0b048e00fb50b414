"""Playback tokens and the rules for serving a video's files under `/play/<token>/<path>`.

A playback token is `<video_id>.<expires>.<signature>`: `expires` in unix seconds, `signature`
the unpadded base64url HMAC-SHA256 of `avc-play-v1:<video_id>:<expires>` under the media
playback secret. It sits in the URL path, so the relative URIs inside the playlists keep
working, and it names one video only: a path can only ever reach `videos/<video_id>/…`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Final

from avc_common.ids import is_id
from avc_media.errors import InvalidPlaybackToken, PlaybackTokenExpired

_DOMAIN: Final = b"avc-play-v1"
_MAX_TOKEN_CHARS: Final = 200
_SIGNATURE_CHARS: Final = 43  # 32 bytes, base64url without padding


@dataclass(frozen=True)
class PlaybackGrant:
    video_id: str
    expires_at: int
    """Unix seconds."""


def _sign(secret: bytes, video_id: str, expires_at: int) -> str:
    message = b":".join((_DOMAIN, video_id.encode(), str(expires_at).encode()))
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def mint_playback_token(
    video_id: str, *, secret: bytes, ttl_seconds: int, now: float | None = None
) -> str:
    """Returns a token letting its holder fetch this video's files for `ttl_seconds`."""
    expires_at = int(now if now is not None else time.time()) + ttl_seconds
    return f"{video_id}.{expires_at}.{_sign(secret, video_id, expires_at)}"


def verify_playback_token(token: str, *, secret: bytes, now: float | None = None) -> PlaybackGrant:
    """Returns what the token grants; raises InvalidPlaybackToken or PlaybackTokenExpired."""
    parts = token.split(".") if len(token) <= _MAX_TOKEN_CHARS else []
    if len(parts) != 3:
        raise InvalidPlaybackToken()
    video_id, expires_text, signature = parts
    if (
        not is_id(video_id, "vid")
        or not expires_text.isdigit()
        or len(expires_text) > 12
        or len(signature) != _SIGNATURE_CHARS
    ):
        raise InvalidPlaybackToken()
    expires_at = int(expires_text)
    expected = _sign(secret, video_id, expires_at)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InvalidPlaybackToken()
    if expires_at <= (now if now is not None else time.time()):
        raise PlaybackTokenExpired()
    return PlaybackGrant(video_id=video_id, expires_at=expires_at)


# ---- files ------------------------------------------------------------------------------------

MASTER_PLAYLIST: Final = "master.m3u8"
THUMBNAIL: Final = "thumbnail.jpg"

CONTENT_TYPES: Final = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".vtt": "text/vtt; charset=utf-8",
}
# Playlists and subtitles may be replaced; segments and the poster of an encode never change.
SHORT_CACHE_SECONDS: Final = 10
LONG_CACHE_SECONDS: Final = 365 * 24 * 3600
_SHORT_CACHED: Final = frozenset({".m3u8", ".vtt"})
_SEGMENT: Final = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$")
_MAX_DEPTH: Final = 3


def source_prefix(video_id: str) -> str:
    """Returns the storage prefix of a video's uploaded source (never served)."""
    return f"sources/{video_id}"


def video_prefix(video_id: str) -> str:
    """Returns the storage prefix of a video's playable files."""
    return f"videos/{video_id}"


def object_key_for(video_id: str, file_path: str) -> str | None:
    """Returns the storage key of a playable file, or None when the path is not one.

    Only plain names (letters, digits, `_ - .`, no leading dot, no `..`) up to three levels
    deep, with a known extension: nothing outside `videos/<video_id>/` can be named."""
    parts = file_path.split("/")
    if not 1 <= len(parts) <= _MAX_DEPTH:
        return None
    if not all(_SEGMENT.match(p) and ".." not in p for p in parts):
        return None
    if extension(parts[-1]) not in CONTENT_TYPES:
        return None
    return f"{video_prefix(video_id)}/{file_path}"


def extension(name: str) -> str:
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def content_type_for(name: str) -> str:
    return CONTENT_TYPES.get(extension(name), "application/octet-stream")


def cache_control_for(name: str, *, private: bool, seconds_left: int) -> str:
    """Returns the Cache-Control of a file: playlists short, segments and posters long and
    immutable — never beyond the token's own lifetime (a cache must not outlive the link)."""
    scope = "private" if private else "public"
    if extension(name) in _SHORT_CACHED:
        return f"{scope}, max-age={max(0, min(SHORT_CACHE_SECONDS, seconds_left))}"
    return f"{scope}, max-age={max(0, min(LONG_CACHE_SECONDS, seconds_left))}, immutable"


# ---- HTTP ranges ------------------------------------------------------------------------------

_RANGE: Final = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int

    @property
    def end(self) -> int:
        return self.start + self.length - 1


class UnsatisfiableRange(Exception):
    """The range lies outside the file (HTTP 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Returns the single byte range asked for, or None to send the whole file (no header,
    a syntax this server ignores, or several ranges — RFC 9110 allows ignoring Range).
    Raises UnsatisfiableRange when the range lies outside the file."""
    if not header:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        suffix = int(last)
        if suffix == 0:
            raise UnsatisfiableRange()
        if size == 0:
            raise UnsatisfiableRange()
        length = min(suffix, size)
        return ByteRange(size - length, length)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignored
    if start >= size:
        raise UnsatisfiableRange()
    end = min(end, size - 1)
    return ByteRange(start, end - start + 1)
