"""The media service's own settings (`AVC_*`), beside the shared `avc_common.config.Settings`.

Read by both media components: the API (`media`) and the encoder (`media-worker`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIN_SECRET_BYTES: Final = 32
X264_PRESETS: Final = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
DEFAULT_LADDER: Final = (1080, 720, 480, 360)


class MediaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVC_", extra="ignore", frozen=True)

    # Where clients reach the gateway, for the absolute media URLs the API hands out
    # (`https://video.example.com`). Empty: root-relative URLs (`/play/...`).
    public_base_url: str = ""

    # Signs playback tokens (HMAC-SHA256). Empty: generated once, kept in
    # <data dir>/secrets/media.json; every media replica must share one value.
    playback_secret: SecretStr = SecretStr("")
    playback_token_ttl_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)

    # Untrusted media limits: what is refused before any encoding starts.
    media_max_duration_seconds: float = Field(default=4 * 3600, gt=0)
    media_max_width: int = Field(default=3840, ge=16)
    """Largest long side of a frame, whatever the orientation."""
    media_max_height: int = Field(default=2160, ge=16)
    """Largest short side of a frame (the height of a landscape video)."""
    media_max_source_bytes: int = Field(default=50 * 1024**3, ge=1)
    media_probe_timeout_seconds: float = Field(default=60.0, gt=0)
    # An encode is killed after base + factor x duration seconds (a hung or hostile input).
    media_encode_timeout_base_seconds: float = Field(default=600.0, gt=0)
    media_encode_timeout_factor: float = Field(default=20.0, gt=0)

    # Encoding.
    media_encode_concurrency: int = Field(default=1, ge=1, le=64)
    media_ladder: str = ",".join(str(h) for h in DEFAULT_LADDER)
    """Rung heights (short side), largest first; the source is never upscaled."""
    media_x264_preset: str = "veryfast"
    media_segment_seconds: int = Field(default=6, ge=2, le=10)
    media_ffmpeg_threads: int = Field(default=0, ge=0)
    media_ffmpeg_nice: int = Field(default=0, ge=0, le=19)
    # Paths of the binaries; empty: the system's (PATH) when present, else the static ffmpeg
    # of the imageio-ffmpeg wheel (and probing through ffmpeg itself when there is no ffprobe).
    media_ffmpeg_path: str = ""
    media_ffprobe_path: str = ""
    # Temporary files of encodes (downloaded sources, HLS output before upload).
    media_work_dir: Path | None = None

    # Reliability: encode leases and re-drive.
    media_lease_seconds: float = Field(default=60.0, ge=2)
    media_redrive_interval_seconds: float = Field(default=30.0, gt=0)
    media_redrive_after_seconds: float = Field(default=600.0, ge=0)
    """A video never picked up by any worker is re-queued after this long."""
    media_max_encode_attempts: int = Field(default=3, ge=1)

    @field_validator("playback_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and len(raw.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return value

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (or be empty)")
        return value

    @field_validator("media_x264_preset")
    @classmethod
    def _preset(cls, value: str) -> str:
        if value not in X264_PRESETS:
            raise ValueError(f"must be one of {', '.join(X264_PRESETS)}")
        return value

    @field_validator("media_ladder")
    @classmethod
    def _ladder(cls, value: str) -> str:
        try:
            heights = [int(part) for part in value.split(",") if part.strip()]
        except ValueError:
            raise ValueError("must be comma-separated heights, e.g. 1080,720,480,360") from None
        if not heights or any(h < 16 or h > 4320 or h % 2 for h in heights):
            raise ValueError("needs at least one even height between 16 and 4320")
        return ",".join(str(h) for h in sorted(set(heights), reverse=True))

    @property
    def ladder_heights(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.media_ladder.split(","))

    @property
    def lease_heartbeat_seconds(self) -> float:
        return self.media_lease_seconds / 4
