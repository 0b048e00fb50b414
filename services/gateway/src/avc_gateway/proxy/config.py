"""Where the gateway finds each service, and how long it waits for them (`AVC_*`)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ProxySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVC_", extra="ignore", frozen=True)

    # Base URLs of the services when they run as separate processes (`http://upload:8080`).
    # Ignored in all-in-one mode, where the gateway calls the services in-process.
    upload_url: str = ""
    media_url: str = ""
    stats_url: str = ""
    webhooks_url: str = ""

    proxy_connect_timeout: float = Field(default=5.0, gt=0)
    # Per read/write, not per request: a slow 5 MiB chunk upload must not be cut off.
    proxy_read_timeout: float = Field(default=300.0, gt=0)
    proxy_write_timeout: float = Field(default=300.0, gt=0)
    # Waiting for a free pooled connection; past it the service is treated as unavailable.
    proxy_pool_timeout: float = Field(default=5.0, gt=0)
    proxy_max_connections: int = Field(default=512, ge=1)
    proxy_max_keepalive_connections: int = Field(default=128, ge=0)
    # Below uvicorn's 5 s keep-alive, so the gateway never reuses a connection the service
    # is closing at that moment.
    proxy_keepalive_expiry: float = Field(default=4.0, ge=0)

    # The merged public OpenAPI document is rebuilt at most this often.
    openapi_cache_seconds: float = Field(default=30.0, ge=0)
    openapi_fetch_timeout: float = Field(default=5.0, gt=0)

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

    def service_url(self, service: str) -> str:
        """Returns the configured base URL of `service` ("" when none)."""
        value: str = getattr(self, f"{service}_url", "")
        return value
