"""The gateway's own settings (`AVC_*`), beside the shared `avc_common.config.Settings`.

Secrets left empty are generated once and kept under the data dir (see `secrets_store`), which
is right for the quick start only: several replicas must be given the same values.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

AccountRateClass = Literal["read", "write", "upload", "stats"]
"""The classes counted per API key / account, which the operator may raise for one account."""
ACCOUNT_RATE_CLASSES: Final[tuple[AccountRateClass, ...]] = ("read", "write", "upload", "stats")
MIN_SECRET_BYTES: Final = 32


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVC_", extra="ignore", frozen=True)

    # Signs dashboard sessions (HS256). Empty: generated once, kept in <data dir>/secrets.
    jwt_secret: SecretStr = SecretStr("")
    # HMAC key of the stored API-key hashes. Changing it invalidates every API key.
    api_key_secret: SecretStr = SecretStr("")
    jwt_issuer: str = Field(default="avcaption", min_length=1)
    jwt_audience: str = Field(default="avcaption-api", min_length=1)
    jwt_ttl_seconds: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    read_rate_limit_per_minute: int = Field(default=300, ge=1)
    write_rate_limit_per_minute: int = Field(default=60, ge=1)
    upload_rate_limit_per_minute: int = Field(default=60, ge=1)
    stats_rate_limit_per_minute: int = Field(default=60, ge=1)
    public_rate_limit_per_minute: int = Field(default=1200, ge=1)
    login_rate_limit_per_minute: int = Field(default=10, ge=1)
    # Every login attempt from one client IP, whatever the email: guessing across many
    # accounts (one password each) is capped too.
    login_ip_rate_limit_per_minute: int = Field(default=60, ge=1)
    # Client IP from X-Forwarded-For only behind a proxy that sets it; otherwise anyone could
    # pick their own IP and escape the per-IP limits.
    trust_forwarded_for: bool = False

    last_used_flush_seconds: float = Field(default=60.0, gt=0)
    # Active (unrevoked) API keys one account may hold.
    max_api_keys_per_account: int = Field(default=20, ge=1)

    # argon2id cost (argon2-cffi's defaults, RFC 9106's second recommendation).
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=65536, ge=64)
    password_hash_parallelism: int = Field(default=4, ge=1)

    @field_validator("jwt_secret", "api_key_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and len(raw.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes "
                "(e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return value

    def account_rate_limits(self) -> dict[AccountRateClass, int]:
        """Returns the default per-minute limit of each per-account class."""
        return {
            "read": self.read_rate_limit_per_minute,
            "write": self.write_rate_limit_per_minute,
            "upload": self.upload_rate_limit_per_minute,
            "stats": self.stats_rate_limit_per_minute,
        }
