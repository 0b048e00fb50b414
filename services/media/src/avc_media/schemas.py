"""Request and response bodies of the media API (API.md, "Videos" and "Embed and playback")."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from avc_media.domains import normalize_domains

Visibility = Literal["public", "private"]
Status = Literal["processing", "ready", "failed"]

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SESSION = re.compile(r"^[\x21-\x7e]{1,128}$")


class ErrorInfo(BaseModel):
    code: str
    message: str


class Rendition(BaseModel):
    name: str = Field(examples=["720p"])
    width: int
    height: int
    bitrate_kbps: int = Field(description="Average bitrate of the rendition (video + audio).")


class Subtitle(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str
    language: str
    label: str | None = None
    kind: str
    url: str | None
    created_at: str | None = None


class Video(BaseModel):
    id: str
    title: str
    filename: str
    status: Status
    size_bytes: int
    sha256: str | None
    duration_seconds: float | None
    width: int | None
    height: int | None
    allowed_domains: list[str]
    visibility: Visibility
    embed_token: str
    embed_url: str
    hls_url: str | None
    thumbnail_url: str | None
    renditions: list[Rendition]
    subtitles: list[Subtitle]
    preset_id: str | None
    error: ErrorInfo | None
    created_at: str
    updated_at: str


class VideoPage(BaseModel):
    data: list[Video]
    page: int
    per_page: int
    total: int
    total_pages: int


class VideoUpdate(BaseModel):
    """`PUT /api/v1/videos/:id`: any of these fields; the others stay as they are."""

    model_config = ConfigDict(extra="forbid")

    title: str | None = Field(default=None, min_length=1, max_length=500)
    allowed_domains: list[str] | None = Field(
        default=None,
        description="Hostnames (`example.com`) or wildcards (`*.example.com`); empty = anywhere.",
    )
    visibility: Visibility | None = None
    preset_id: str | None = None

    @field_validator("title")
    @classmethod
    def _title(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value.strip() if value is not None else None

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, value: list[str] | None) -> list[str] | None:
        return normalize_domains(value) if value is not None else None


class RegisterVideo(BaseModel):
    """`POST /internal/v1/videos/register` (upload service → media)."""

    video_id: str
    upload_id: str = Field(min_length=1, max_length=200)
    filename: str = Field(min_length=1, max_length=1000)
    title: str | None = Field(default=None, max_length=500)
    size_bytes: int = Field(ge=0)
    sha256: str | None = None
    source_key: str = Field(min_length=1, max_length=1024)

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not _SHA256.match(value):
            raise ValueError("must be 64 hexadecimal digits")
        return value


class Registered(BaseModel):
    video_id: str
    embed_token: str
    status: Status


class Embed(BaseModel):
    video_id: str
    title: str
    status: Status
    duration_seconds: float | None
    width: int | None
    height: int | None
    thumbnail_url: str | None
    hls_url: str | None
    subtitles: list[Subtitle]
    preset: dict[str, Any] | None


class ViewReport(BaseModel):
    model_config = ConfigDict(extra="ignore")

    session_id: str | None = Field(
        default=None,
        description="The player's session; one view per session per video per 30 minutes.",
    )

    @field_validator("session_id")
    @classmethod
    def _session(cls, value: str | None) -> str | None:
        if value is not None and not _SESSION.match(value):
            raise ValueError("must be 1-128 printable ASCII characters without spaces")
        return value


class ViewAccepted(BaseModel):
    counted: bool = Field(description="False when this session's view was already counted.")
