"""Request and response bodies of the media API (API.md, "Videos" and "Embed and playback")."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema

from avc_common.ids import is_id
from avc_common.objects import InvalidKey, validate_key
from avc_media.domains import normalize_domains
from avc_media.errors import PresetNotFound
from avc_media.playback import source_prefix
from avc_media.repository import KEEP, VideoChanges
from avc_media.repository import Visibility as VisibilityValue

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

    title: str | SkipJsonSchema[None] = Field(default=None, min_length=1, max_length=500)
    allowed_domains: list[str] | None = Field(
        default=None,
        description="Hostnames (`example.com`) or wildcards (`*.example.com`); empty or null "
        "= anywhere.",
    )
    visibility: Visibility | SkipJsonSchema[None] = None
    preset_id: str | None = Field(default=None, description="A player preset; null: none.")

    @field_validator("title", "visibility", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("cannot be null")
        return value

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

    @field_validator("preset_id")
    @classmethod
    def _preset(cls, value: str | None) -> str | None:
        if value is not None and not is_id(value, "pre"):
            raise PresetNotFound()
        return value

    def changes(self) -> VideoChanges:
        """Returns the change this request asks for (fields not sent stay as they are)."""
        sent = self.model_fields_set
        return VideoChanges(
            title=self.title if "title" in sent and self.title is not None else KEEP,
            allowed_domains=tuple(self.allowed_domains or ())
            if "allowed_domains" in sent
            else KEEP,
            visibility=(
                VisibilityValue(self.visibility)
                if "visibility" in sent and self.visibility is not None
                else KEEP
            ),
            preset_id=self.preset_id if "preset_id" in sent else KEEP,
        )


class RegisterVideo(BaseModel):
    """`POST /internal/v1/videos/register` (upload service → media): the source is stored
    under `sources/<video_id>/`."""

    video_id: str = Field(description="A video id (`vid_…`) chosen by the upload service.")
    upload_id: str = Field(min_length=1, max_length=200)
    filename: str = Field(min_length=1, max_length=1000)
    title: str | None = Field(default=None, max_length=500)
    size_bytes: int = Field(ge=0)
    sha256: str | None = None
    source_key: str = Field(min_length=1, max_length=1024)

    @field_validator("video_id")
    @classmethod
    def _video_id(cls, value: str) -> str:
        if not is_id(value, "vid"):
            raise ValueError("must be a video id (vid_…)")
        return value

    @field_validator("sha256")
    @classmethod
    def _sha256(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.lower()
        if not _SHA256.match(value):
            raise ValueError("must be 64 hexadecimal digits")
        return value

    @field_validator("source_key")
    @classmethod
    def _source_key(cls, value: str) -> str:
        try:
            validate_key(value)
        except InvalidKey:
            raise ValueError("is not a valid storage key") from None
        return value

    @model_validator(mode="after")
    def _source_of_this_video(self) -> RegisterVideo:
        prefix = source_prefix(self.video_id)
        if not self.source_key.startswith(prefix + "/"):
            raise ValueError(f"source_key must be under {prefix}/")
        return self


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
