"""Typed answers of the public API (docs/api.md). Unknown fields are kept, not refused, so an
older client keeps working against a newer server."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


class Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Page(Model, Generic[T]):
    data: list[T]
    page: int
    per_page: int
    total: int
    total_pages: int


# -- account and keys ----------------------------------------------------------------------


class RateLimits(Model):
    read: int
    write: int
    upload: int
    stats: int


class Account(Model):
    id: str
    email: str
    plan: str
    api_preview: bool
    created_at: str
    rate_limits: RateLimits


class Token(Model):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the scheme, not a secret
    expires_in: int


class ApiKeyCreated(Model):
    id: str
    name: str
    key: str
    prefix: str
    created_at: str


class ApiKey(Model):
    id: str
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None = None


class ApiKeyList(Model):
    data: list[ApiKey]


# -- videos --------------------------------------------------------------------------------


class ErrorInfo(Model):
    code: str
    message: str


class Rendition(Model):
    name: str
    width: int
    height: int
    bitrate_kbps: int


class Translation(Model):
    language: str
    status: str
    error: ErrorInfo | None = None


class Subtitle(Model):
    id: str
    language: str
    label: str | None = None
    kind: str
    url: str | None = None
    created_at: str | None = None
    translations: list[Translation] = Field(default_factory=list)


VideoStatus = Literal["processing", "ready", "failed"]


class Video(Model):
    id: str
    title: str
    filename: str
    status: str
    size_bytes: int
    sha256: str | None = None
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    allowed_domains: list[str] = Field(default_factory=list)
    visibility: str = "public"
    embed_token: str
    embed_url: str | None = None
    embed_html: str | None = None
    hls_url: str | None = None
    thumbnail_url: str | None = None
    renditions: list[Rendition] = Field(default_factory=list)
    subtitles: list[Subtitle] = Field(default_factory=list)
    preset_id: str | None = None
    error: ErrorInfo | None = None
    created_at: str
    updated_at: str

    @property
    def finished(self) -> bool:
        """True once processing ended (`ready` or `failed`)."""
        return self.status in ("ready", "failed")


class VideoCreated(Model):
    video_id: str
    embed_token: str
    status: str


class Embed(Model):
    video_id: str
    title: str
    status: str
    duration_seconds: float | None = None
    width: int | None = None
    height: int | None = None
    thumbnail_url: str | None = None
    hls_url: str | None = None
    subtitles: list[Subtitle] = Field(default_factory=list)
    preset: dict[str, Any] | None = None


class ViewAccepted(Model):
    counted: bool = True


# -- uploads -------------------------------------------------------------------------------


class UploadInit(Model):
    upload_id: str
    chunk_size: int
    total_chunks: int
    expires_at: str


class ChunkAccepted(Model):
    upload_id: str
    chunk_index: int
    received_chunks: int
    total_chunks: int


class UploadStatus(Model):
    upload_id: str
    status: str
    filename: str
    size: int
    chunk_size: int
    total_chunks: int
    received: list[int]
    missing: list[int]
    expires_at: str
    video_id: str | None = None


# -- stats ---------------------------------------------------------------------------------


class VideosByStatus(Model):
    processing: int = 0
    ready: int = 0
    failed: int = 0


class Stats(Model):
    total_videos: int
    total_views: int
    storage_used_bytes: int
    videos_by_status: VideosByStatus


class Thresholds(Model):
    views: list[int]


# -- presets -------------------------------------------------------------------------------


class Preset(Model):
    id: str
    name: str
    autoplay: bool | None = None
    muted: bool | None = None
    loop: bool | None = None
    controls: bool | None = None
    primary_color: str | None = None
    default_subtitle_language: str | None = None
    start_time_seconds: float | None = None
    created_at: str | None = None


# -- webhooks ------------------------------------------------------------------------------


class Webhook(Model):
    id: str
    url: str
    events: list[str]
    enabled: bool
    description: str | None = None
    disabled_reason: str | None = None
    created_at: str
    updated_at: str | None = None


class WebhookCreated(Webhook):
    secret: str


class Attempt(Model):
    attempt: int
    started_at: str
    duration_ms: int
    outcome: str
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    retry_after_seconds: float | None = None


class Delivery(Model):
    id: str
    webhook_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: str | None = None
    created_at: str
    updated_at: str | None = None
    delivered_at: str | None = None
    attempt_log: list[Attempt] = Field(default_factory=list)
