"""Storage of the stats service in its own database: typed records (`records`) and the
repository that reads and writes them (`store`). Nothing outside this package knows a field
name or a query operator."""

from avc_stats.repository.records import (
    AccountCounters,
    Applied,
    Claim,
    Fire,
    InboxState,
    VideoRecord,
    fire_id,
)
from avc_stats.repository.store import Compute, Conflict, StatsRepository

__all__ = [
    "AccountCounters",
    "Applied",
    "Claim",
    "Compute",
    "Conflict",
    "Fire",
    "InboxState",
    "StatsRepository",
    "VideoRecord",
    "fire_id",
]
