"""The webhooks service's own settings (`AVC_WEBHOOKS_*`), read by the webhooks API and by the
`webhooks-worker` that sends deliveries.

Until the next release every old `AVC_WEBHOOK_<FIELD>` name (`RENAMED_ENV`) still works, with a
warning at start.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import Field, field_validator
from pydantic_settings import (
    NoDecode,
    SettingsConfigDict,
)

from avc_common.config_compat import RenamableSettings
from avc_webhooks.ssrf import Resolver, UrlPolicy

DEFAULT_RETRY_SCHEDULE: Final = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
"""Seconds before each retry: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (API.md)."""
MAX_RETRIES: Final = 50
ENV_PREFIX: Final = "AVC_WEBHOOKS_"
OLD_ENV_PREFIX: Final = "AVC_WEBHOOK_"


def _split(value: Any) -> Any:
    """Accepts a JSON list or a comma-separated string (`5,300,1800`) from the environment."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            import json

            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


class WebhookSettings(RenamableSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    # Development only: allows `http://` URLs and loopback/private/link-local targets.
    allow_insecure: bool = False
    # CIDRs exempt from the private-address refusal (https is still required), e.g. an
    # operator's internal receivers: `10.20.0.0/16,fd00:1::/64`. Empty by default.
    allowed_networks: Annotated[tuple[str, ...], NoDecode] = ()
    # Extra CA certificates (PEM) trusted for receivers, besides the public ones (certifi).
    ca_file: Path | None = None

    retry_schedule: Annotated[tuple[float, ...], NoDecode] = DEFAULT_RETRY_SCHEDULE
    # Each retry waits its scheduled delay plus up to this fraction more, at random.
    retry_jitter: float = Field(default=0.1, ge=0, le=1)
    # A `Retry-After` longer than this is cut to it.
    retry_after_max_seconds: float = Field(default=36000.0, ge=0)
    timeout_seconds: float = Field(default=15.0, gt=0, le=300)
    # At most this much of a receiver's response is read; `stored_response_bytes` of it kept.
    response_read_limit_bytes: int = Field(default=64 * 1024, ge=0)
    stored_response_bytes: int = Field(default=1024, ge=0)
    # An endpoint failing every attempt for this long is disabled (5 days).
    disable_after_seconds: float = Field(default=5 * 24 * 3600.0, gt=0)
    dns_timeout_seconds: float = Field(default=5.0, gt=0)

    # Worker: deliveries sent at once, how often it looks for due ones, and how long a claimed
    # delivery stays leased to it (longer than one attempt can take).
    concurrency: int = Field(default=8, ge=1, le=256)
    poll_interval_seconds: float = Field(default=1.0, gt=0)
    lease_seconds: float = Field(default=60.0, gt=0)

    max_endpoints_per_account: int = Field(default=20, ge=1)
    consumer_prefetch: int = Field(default=16, ge=1, le=1000)

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _schedule(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("retry_schedule")
    @classmethod
    def _schedule_values(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if len(value) > MAX_RETRIES:
            raise ValueError(f"at most {MAX_RETRIES} retries")
        if any(delay < 0 for delay in value):
            raise ValueError("retry delays must not be negative")
        return value

    @field_validator("allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        return _split(value)

    @field_validator("allowed_networks")
    @classmethod
    def _network_values(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
        return value

    def url_policy(self, resolver: Resolver | None = None) -> UrlPolicy:
        """Returns the SSRF policy these settings describe (`resolver`: tests' DNS)."""
        return UrlPolicy(
            allow_insecure=self.allow_insecure,
            allowed_networks=self.networks,
            resolver=resolver,
            dns_timeout=self.dns_timeout_seconds,
        )

    @property
    def networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.allowed_networks)


RENAMED_ENV: Final = {
    f"{OLD_ENV_PREFIX}{name}".upper(): name for name in WebhookSettings.model_fields
}
"""Old variable -> field: every setting was `AVC_WEBHOOK_<FIELD>` (now `AVC_WEBHOOKS_<FIELD>`)."""
# Known only once the class exists (every field has an old name).
WebhookSettings.renamed_env = RENAMED_ENV
