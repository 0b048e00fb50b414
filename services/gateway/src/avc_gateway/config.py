"""The gateway's own settings (`AVC_GATEWAY_*`), beside the shared `avc_common.config.Settings`.

Secrets left empty are generated once and kept under the data dir (see `secrets_store`), which
is right for the quick start only: several replicas must be given the same values.

The two secrets keep their un-prefixed names (`AVC_JWT_SECRET`, `AVC_API_KEY_SECRET`): a
renamed secret that an operator forgets to rename is not an error but an empty value, and the
gateway would quietly generate a new one, logging out every session or invalidating every API
key. Every other variable moved under `AVC_GATEWAY_`; the old names (`RENAMED_ENV`) work until
the next release, with a warning at start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final, Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from avc_common.config_compat import RenamableSettings
from avc_common.secrets import OptionalSecret

AccountRateClass = Literal["read", "write", "upload", "stats"]
"""The classes counted per API key / account, which the operator may raise for one account."""
ACCOUNT_RATE_CLASSES: Final[tuple[AccountRateClass, ...]] = ("read", "write", "upload", "stats")

ENV_PREFIX: Final = "AVC_GATEWAY_"
_GATEWAY_FIELDS: Final = (
    "jwt_issuer",
    "jwt_audience",
    "jwt_ttl_seconds",
    "read_rate_limit_per_minute",
    "write_rate_limit_per_minute",
    "upload_rate_limit_per_minute",
    "stats_rate_limit_per_minute",
    "public_rate_limit_per_minute",
    "login_rate_limit_per_minute",
    "login_ip_rate_limit_per_minute",
    "trust_forwarded_for",
    "last_used_flush_seconds",
    "max_api_keys_per_account",
    "password_hash_time_cost",
    "password_hash_memory_kib",
    "password_hash_parallelism",
)
RENAMED_ENV: Final = {f"AVC_{name.upper()}": name for name in _GATEWAY_FIELDS}
"""Old variable -> field of `GatewaySettings` (read as `AVC_GATEWAY_<FIELD>` now)."""


class GatewaySettings(RenamableSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="ignore", frozen=True, populate_by_name=True
    )
    renamed_env: ClassVar[Mapping[str, str]] = RENAMED_ENV

    # Signs dashboard sessions (HS256). Empty: generated once, kept in <data dir>/secrets.
    jwt_secret: OptionalSecret = Field(default=SecretStr(""), validation_alias="AVC_JWT_SECRET")
    # HMAC key of the stored API-key hashes. Changing it invalidates every API key.
    api_key_secret: OptionalSecret = Field(
        default=SecretStr(""), validation_alias="AVC_API_KEY_SECRET"
    )
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

    def account_rate_limits(self) -> dict[AccountRateClass, int]:
        """Returns the default per-minute limit of each per-account class."""
        return {
            "read": self.read_rate_limit_per_minute,
            "write": self.write_rate_limit_per_minute,
            "upload": self.upload_rate_limit_per_minute,
            "stats": self.stats_rate_limit_per_minute,
        }
