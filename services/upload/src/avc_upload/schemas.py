"""Request and response bodies of the upload API (API.md "Upload")."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from avc_common.timeutil import to_rfc3339

UploadStatus = Literal["open", "completing", "completed"]


class InitRequest(BaseModel):
    """`POST /api/v1/upload/init` (JSON whatever the Content-Type says)."""

    model_config = ConfigDict(frozen=True)

    filename: str = Field(description="1-255 characters, no '/', '\\' or control characters.")
    size: int = Field(description="Size of the whole file in bytes.", ge=1)
    title: str | None = Field(default=None, description="Defaults to the filename's stem.")


class CompleteRequest(BaseModel):
    """`POST /api/v1/upload/complete` (JSON whatever the Content-Type says)."""

    model_config = ConfigDict(frozen=True)

    upload_id: str


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
