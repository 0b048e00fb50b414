"""Request and response bodies of the upload API (API.md "Upload")."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

from avc_common.timeutil import to_rfc3339
from avc_upload.errors import InvalidFilename, InvalidSize, InvalidTitle

UploadStatus = Literal["open", "completing", "completed"]

MAX_FILENAME_CHARS: Final = 255
MAX_TITLE_CHARS: Final = 500


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a JSON "\ud800"
        return False
    return True


def valid_filename(value: Any) -> str:
    """Returns `value` if it is a usable file name; raises InvalidFilename (also used for the
    direct upload's form field)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidFilename('filename is required: a non-empty string such as "lesson-1.mp4".')
    if len(value) > MAX_FILENAME_CHARS:
        raise InvalidFilename(f"filename must be at most {MAX_FILENAME_CHARS} characters.")
    if "/" in value or "\\" in value or value in (".", ".."):
        raise InvalidFilename("filename must be a bare file name, without '/' or '\\'.")
    if _has_control(value) or not _is_utf8(value):
        raise InvalidFilename("filename must not contain control characters.")
    return value


def title_or_default(value: Any, filename: str) -> str:
    """Returns the title, or the filename without its extension when none is given."""
    if value is None or value == "":
        stem, dot, _ = filename.rpartition(".")
        return stem if dot and stem.strip() else filename
    if not isinstance(value, str):
        raise InvalidTitle("title must be a string.")
    if len(value) > MAX_TITLE_CHARS:
        raise InvalidTitle(f"title must be at most {MAX_TITLE_CHARS} characters.")
    if _has_control(value.replace("\t", " ")) or not _is_utf8(value):
        raise InvalidTitle("title must not contain control characters.")
    return value


class InitRequest(BaseModel):
    """`POST /api/v1/upload/init` (JSON whatever the Content-Type says). Validating it raises
    the coded errors (`invalid_filename`, `invalid_size`, `invalid_title`), in that order; the
    size limit (`file_too_large`) is the service's, as it is a setting."""

    model_config = ConfigDict(frozen=True)

    filename: str = Field(
        description="1-255 characters, no '/', '\\' or control characters.",
        max_length=MAX_FILENAME_CHARS,
    )
    size: int = Field(description="Size of the whole file in bytes.", ge=1)
    title: str = Field(
        default="", description="Defaults to the filename's stem.", max_length=MAX_TITLE_CHARS
    )

    @model_validator(mode="before")
    @classmethod
    def _coded(cls, data: Any) -> Any:
        fields: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
        filename = valid_filename(fields.get("filename"))
        size = fields.get("size")
        if isinstance(size, bool) or not isinstance(size, int):
            raise InvalidSize("size is required: the file's size in bytes, a whole number.")
        if size < 1:
            raise InvalidSize("size must be at least 1 byte.")
        title = title_or_default(fields.get("title"), filename)
        return {"filename": filename, "size": size, "title": title}


class CompleteRequest(BaseModel):
    """`POST /api/v1/upload/complete` (JSON whatever the Content-Type says)."""

    model_config = ConfigDict(frozen=True)

    upload_id: str = Field(min_length=1)


class InitResponse(BaseModel):
    upload_id: str
    chunk_size: int = Field(description="Every chunk has this length except the last.")
    total_chunks: int
    expires_at: datetime = Field(description="Complete the upload before this time (RFC 3339).")

    @field_serializer("expires_at")
    def _ser_expires(self, value: datetime) -> str:
        return to_rfc3339(value)


class ChunkResponse(BaseModel):
    upload_id: str
    chunk_index: int
    received_chunks: int
    total_chunks: int


class UploadStatusResponse(BaseModel):
    upload_id: str
    status: UploadStatus = Field(
        description="`open`: taking chunks; `completing`: a complete call is running or was "
        "interrupted (call complete again); `completed`."
    )
    filename: str
    size: int
    chunk_size: int
    total_chunks: int
    received: list[int]
    missing: list[int]
    expires_at: datetime
    video_id: str | None = Field(description="Set once the upload is completed.")

    @field_serializer("expires_at")
    def _ser_expires(self, value: datetime) -> str:
        return to_rfc3339(value)


class VideoCreated(BaseModel):
    """What `complete` and the direct upload answer."""

    video_id: str
    embed_token: str
    status: str = Field(description='Always "processing" at this point.')
