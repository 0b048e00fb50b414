"""Receiving webhooks: `verify_webhook` checks a delivery the Standard Webhooks way and returns
the typed event; `parse_event` only parses (for a body verified elsewhere).

Signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`, HMAC-SHA256 with the key that
follows `whsec_` in the secret (base64), sent as `v1,<base64>` entries separated by spaces in
`webhook-signature` (several while a secret rotates). A timestamp further than `tolerance`
seconds from now is refused, so a captured delivery cannot be replayed later.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from .errors import AvcError
from .models import ErrorInfo, Rendition

DEFAULT_TOLERANCE_SECONDS = 300


class WebhookVerificationError(AvcError):
    """The delivery is not authentic, not fresh or not an event (`reason` says which)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class _Data(BaseModel):
    model_config = ConfigDict(extra="allow")


class VideoUploadedData(_Data):
    video_id: str
    upload_id: str | None = None
    filename: str | None = None
    title: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None


class VideoEncodedData(_Data):
    video_id: str
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    renditions: list[Rendition] = Field(default_factory=list)


class VideoFailedData(_Data):
    video_id: str
    error: ErrorInfo | None = None


class ViewThresholdData(_Data):
    video_id: str
    threshold: int
    views: int


class SubtitleTranslatedData(_Data):
    video_id: str
    subtitle_id: str
    source_subtitle_id: str
    language: str


class _Event(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    created_at: str | None = None


class VideoUploaded(_Event):
    type: Literal["video.uploaded"]
    data: VideoUploadedData


class VideoEncoded(_Event):
    type: Literal["video.encoded"]
    data: VideoEncodedData


class VideoFailed(_Event):
    type: Literal["video.failed"]
    data: VideoFailedData


class ViewThreshold(_Event):
    type: Literal["view.threshold"]
    data: ViewThresholdData


class SubtitleTranslated(_Event):
    type: Literal["subtitle.translated"]
    data: SubtitleTranslatedData


class UnknownEvent(_Event):
    """An event type newer than this client: its data as sent."""

    type: str
    data: dict[str, Any] = Field(default_factory=dict)


KnownEvent = Annotated[
    VideoUploaded | VideoEncoded | VideoFailed | ViewThreshold | SubtitleTranslated,
    Field(discriminator="type"),
]
WebhookEvent = (
    VideoUploaded | VideoEncoded | VideoFailed | ViewThreshold | SubtitleTranslated | UnknownEvent
)
_KNOWN: TypeAdapter[Any] = TypeAdapter(KnownEvent)
_TYPES = {
    "video.uploaded",
    "video.encoded",
    "video.failed",
    "view.threshold",
    "subtitle.translated",
}


def parse_event(body: bytes | str) -> WebhookEvent:
    """Parses a webhook body into its typed event (`UnknownEvent` for types not known here)."""
    try:
        raw = UnknownEvent.model_validate_json(body)
        if raw.type in _TYPES:
            event: WebhookEvent = _KNOWN.validate_json(body)
            return event
        return raw
    except ValidationError as exc:
        raise WebhookVerificationError(
            f"not a webhook event: {exc}", reason="invalid_body"
        ) from exc


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix("whsec_")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookVerificationError(
            "the secret is not a whsec_ key", reason="bad_secret"
        ) from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value for a message (what the sender computes)."""
    to_sign = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), to_sign, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(
    body: bytes | str,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> WebhookEvent:
    """Checks a delivery and returns its event; raises `WebhookVerificationError` otherwise.

    `body` must be the raw request body exactly as received (not re-serialised JSON);
    `headers` any mapping (names compared case-insensitively); `secret` the endpoint's
    `whsec_…` secret, or several while rotating."""
    raw = body.encode() if isinstance(body, str) else bytes(body)
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signature = lower.get("webhook-signature")
    if not msg_id or not stamp or not signature:
        raise WebhookVerificationError("webhook-* headers missing", reason="missing_headers")
    try:
        timestamp = int(stamp)
    except ValueError as exc:
        raise WebhookVerificationError("bad webhook-timestamp", reason="bad_timestamp") from exc
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"timestamp {timestamp} is more than {tolerance} s from now", reason="stale_timestamp"
        )
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [sign(s, msg_id, timestamp, raw).split(",", 1)[1] for s in secrets]
    offered = [p.split(",", 1)[1] for p in signature.split() if p.startswith("v1,")]
    if not any(hmac.compare_digest(o, e) for o in offered for e in expected):
        raise WebhookVerificationError("no signature matches", reason="bad_signature")
    return parse_event(raw)
