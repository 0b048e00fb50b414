"""Settings shared by every component, read from `AVC_*` environment variables.

Adapters are picked from URLs. An empty URL means "the embedded default under the data dir",
so `avcaption serve` with no configuration runs with no servers at all.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from avc_common.secrets import OptionalSecret

ServiceName = Literal["gateway", "upload", "media", "stats", "webhooks"]
SERVICE_NAMES: tuple[ServiceName, ...] = ("gateway", "upload", "media", "stats", "webhooks")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVC_", extra="ignore", frozen=True)

    data_dir: Path = Path("./data")
    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)

    database_url: str = ""
    storage_url: str = ""
    bus_url: str = ""
    ratelimit_url: str = ""
    # Prefix of every rate-limit key in Redis: lets installations (or tests) share one Redis.
    ratelimit_key_prefix: str = "avc:rl"
    bus_exchange: str = "avcaption.events"
    # Prefix for queue names: lets test runs and several installations share one broker.
    bus_queue_prefix: str = "avcaption"

    # Where each service listens when components run as separate processes (the gateway proxies
    # to them; upload calls media). Ignored in all-in-one mode, where calls stay in-process.
    # Declared only here: the gateway's proxy reads these too. Empty: not configured (the
    # gateway answers that service's routes 503).
    upload_url: str = "http://127.0.0.1:8081"
    media_url: str = "http://127.0.0.1:8082"
    stats_url: str = "http://127.0.0.1:8083"
    webhooks_url: str = "http://127.0.0.1:8084"

    log_level: str = "INFO"
    log_json: bool = True
    # One `uvicorn.access` line per request (`avcaption serve`); off saves its cost per request.
    access_log: bool = True

    # Bounds of every client connection of `avcaption serve` (avcaption.http_protocol): the
    # request line + headers, the time to send them, the idle time while sending a body, and
    # the open connections per process.
    max_request_head_bytes: int = Field(default=32 * 1024, ge=4096, le=1024 * 1024)
    header_read_timeout: float = Field(default=10.0, gt=0)
    body_read_timeout: float = Field(default=60.0, gt=0)
    body_min_rate: float = Field(default=500.0, ge=0)  # bytes/s after the first timeout; 0: off
    max_connections: int = Field(default=1000, ge=1)
    # `/metrics` on its own port (0: on the main port, next to the API).
    metrics_port: int = Field(default=0, ge=0, le=65535)

    # Signs the gateway's per-request internal tokens; services verify with the same secret.
    internal_secret: OptionalSecret = SecretStr("")

    @field_validator("upload_url", "media_url", "stats_url", "webhooks_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http(s) URL such as http://upload:8080")
            if parts.query or parts.fragment:
                raise ValueError("must not have a query or fragment")
        return value

    @cached_property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def service_url(self, service: ServiceName) -> str:
        """Returns the base URL of another service's HTTP API."""
        urls: dict[str, str] = {
            "upload": self.upload_url,
            "media": self.media_url,
            "stats": self.stats_url,
            "webhooks": self.webhooks_url,
        }
        if service not in urls:
            raise ValueError(f"no URL setting for service {service!r}")
        return urls[service].rstrip("/")

    @property
    def internal_secret_value(self) -> str:
        return self.internal_secret.get_secret_value()

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite://{self.resolved_data_dir}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{self.resolved_data_dir / 'objects'}"

    @property
    def effective_bus_url(self) -> str:
        return self.bus_url or "memory://"

    @property
    def effective_ratelimit_url(self) -> str:
        return self.ratelimit_url or "memory://"
