"""The upload service's own settings (`AVC_UPLOAD_*`), beside the shared `Settings`."""

from __future__ import annotations

from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB: Final = 1024 * 1024
GIB: Final = 1024 * MIB
# S3's largest object; the chunk-size rule (at most 10,000 chunks) keeps working up to it.
MAX_OBJECT_BYTES: Final = 5 * 1024 * GIB


class UploadSettings(BaseSettings):
    """Limits and timings of uploads, read from `AVC_UPLOAD_*` environment variables."""

    model_config = SettingsConfigDict(env_prefix="AVC_UPLOAD_", extra="ignore", frozen=True)

    expiry_seconds: int = Field(default=24 * 3600, ge=1)
    """A chunked upload not completed this long after `init` expires (410 `upload_expired`)."""

    sweep_interval_seconds: float = Field(default=300.0, gt=0)
    """How often the sweeper aborts expired uploads and re-drives interrupted completions."""

    redrive_after_seconds: float = Field(default=600.0, gt=0)
    """A completion left half-done (process killed) this long is finished by the sweeper."""

    record_retention_seconds: int = Field(default=30 * 24 * 3600, ge=60)
    """How long finished upload records (completed, aborted, expired) are kept: while they
    are, `complete` repeats its answer and an expired id answers 410; afterwards 404."""

    direct_max_bytes: int = Field(default=200 * MIB, ge=1)
    """Largest file `POST /api/v1/upload` takes; bigger files need the chunked upload."""

    max_file_bytes: int = Field(default=50 * GIB, ge=1, le=MAX_OBJECT_BYTES)
    """Largest file a chunked upload may declare in `init`."""

    max_open_uploads: int = Field(default=100, ge=1)
    """Chunked uploads one account may have open at once (429 `too_many_open_uploads`)."""
