"""The media service's own settings (`AVC_MEDIA_*`), beside the shared `avc_common.config.Settings`.

Read by both media components: the API (`media`) and the encoder (`media-worker`). Until the
next release the old names of three of them (`RENAMED_ENV`) still work, with a warning at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, Final

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from avc_common.config_compat import RenamableSettings
from avc_common.secrets import OptionalSecret

ENV_PREFIX: Final = "AVC_MEDIA_"
RENAMED_ENV: Final = {
    "AVC_PUBLIC_BASE_URL": "public_base_url",
    "AVC_PLAYBACK_SECRET": "playback_secret",
    "AVC_PLAYBACK_TOKEN_TTL_SECONDS": "playback_token_ttl_seconds",
}
"""Old variable -> field (read as `AVC_MEDIA_<FIELD>` now)."""
REMOVED_ENV: Final = ("AVC_MEDIA_FFPROBE_PATH",)
"""Variables that no longer do anything (probing needs no ffprobe: `encoding.avprobe`)."""

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


class MediaSettings(RenamableSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)
    renamed_env: ClassVar[Mapping[str, str]] = RENAMED_ENV
    removed_env: ClassVar[tuple[str, ...]] = REMOVED_ENV

    # Where clients reach the gateway, for the absolute media URLs the API hands out
    # (`https://video.example.com`). Empty: root-relative URLs (`/play/...`).
    public_base_url: str = ""

    # Signs playback tokens (HMAC-SHA256). Empty: generated once, kept in
    # <data dir>/secrets/media.json; every media replica must share one value.
    playback_secret: OptionalSecret = SecretStr("")
    playback_token_ttl_seconds: int = Field(default=6 * 3600, ge=60, le=7 * 24 * 3600)

    # Untrusted media limits: what is refused before any encoding starts.
    max_duration_seconds: float = Field(default=4 * 3600, gt=0)
    max_width: int = Field(default=3840, ge=16)
    """Largest long side of a frame, whatever the orientation."""
    max_height: int = Field(default=2160, ge=16)
    """Largest short side of a frame (the height of a landscape video)."""
    max_source_bytes: int = Field(default=50 * 1024**3, ge=1)
    probe_timeout_seconds: float = Field(default=60.0, gt=0)
    # An encode is killed after base + factor x duration seconds (a hung or hostile input).
    encode_timeout_base_seconds: float = Field(default=600.0, gt=0)
    encode_timeout_factor: float = Field(default=20.0, gt=0)

    # Encoding.
    encode_concurrency: int = Field(default=1, ge=1, le=64)
    ladder: str = ",".join(str(h) for h in DEFAULT_LADDER)
    """Rung heights (short side), largest first; the source is never upscaled."""
    x264_preset: str = "veryfast"
    segment_seconds: int = Field(default=6, ge=2, le=10)
    ffmpeg_threads: int = Field(default=0, ge=0)
    ffmpeg_nice: int = Field(default=0, ge=0, le=19)
    # The ffmpeg binary; empty: the system's (PATH) when present, else the static ffmpeg of the
    # imageio-ffmpeg wheel.
    ffmpeg_path: str = ""
    # Temporary files of encodes (downloaded sources, HLS output before upload).
    work_dir: Path | None = None
    # Scratch hygiene (`avc_media.scratch`): each worker sweeps folders of dead workers from
    # the scratch root at start and then every interval; a folder whose owner cannot be proven
    # dead (another machine's, an older version's) goes once nothing in it changed this long.
    scratch_sweep_interval_seconds: float = Field(default=600.0, ge=1)
    scratch_orphan_min_age_seconds: float = Field(default=6 * 3600.0, ge=60)

    # Reliability: encode leases and re-drive.
    lease_seconds: float = Field(default=60.0, ge=2)
    redrive_interval_seconds: float = Field(default=30.0, gt=0)
    redrive_after_seconds: float = Field(default=600.0, ge=0)
    """A video never picked up by any worker is re-queued after this long."""
    max_encode_attempts: int = Field(default=3, ge=1)

    @field_validator("public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https:// (or be empty)")
        return value

    @field_validator("x264_preset")
    @classmethod
    def _preset(cls, value: str) -> str:
        if value not in X264_PRESETS:
            raise ValueError(f"must be one of {', '.join(X264_PRESETS)}")
        return value

    @field_validator("ladder")
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
        return tuple(int(part) for part in self.ladder.split(","))

    @property
    def lease_heartbeat_seconds(self) -> float:
        return self.lease_seconds / 4
