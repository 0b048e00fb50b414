"""How long the gateway waits for the services it forwards to (`AVC_GATEWAY_*`).

Where each service is found is not here: the URLs are shared settings
(`avc_common.config.Settings`, `AVC_<SERVICE>_URL`), also read by services that call each other.
Built from the environment once, in `avc_gateway.app.create_app`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from avc_common.config_compat import RenamableSettings
from avc_gateway.config import ENV_PREFIX

_PROXY_FIELDS: Final = (
    "proxy_connect_timeout",
    "proxy_read_timeout",
    "proxy_write_timeout",
    "proxy_pool_timeout",
    "proxy_max_connections",
    "proxy_max_keepalive_connections",
    "proxy_keepalive_expiry",
    "openapi_cache_seconds",
    "openapi_fetch_timeout",
)
RENAMED_ENV: Final = {f"AVC_{name.upper()}": name for name in _PROXY_FIELDS}
"""Old variable -> field of `ProxySettings` (read as `AVC_GATEWAY_<FIELD>` now)."""


class ProxySettings(RenamableSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)
    renamed_env: ClassVar[Mapping[str, str]] = RENAMED_ENV

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
