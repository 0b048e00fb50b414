"""The stats service's own settings (`AVC_STATS_*`), beside the shared `Settings`."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StatsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AVC_STATS_", extra="ignore", frozen=True)

    # How long processed event ids are remembered: a redelivery (or a replay from the dead-letter
    # queue) within this window changes nothing; after it, the id is forgotten.
    dedupe_retention_seconds: int = Field(default=30 * 24 * 3600, ge=3600)
    # An event being processed is leased to one handler for this long; a handler that died is
    # taken over by the re-drive once the lease ran out. Longer than any handler ever takes.
    lease_seconds: float = Field(default=300.0, gt=0)
    # How often unfinished events and unpublished `view.threshold` events are re-driven.
    redrive_interval_seconds: float = Field(default=30.0, gt=0)
    # Events handled concurrently by one stats process.
    consumer_prefetch: int = Field(default=16, ge=1, le=1000)
