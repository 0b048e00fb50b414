"""Short reads on the event-loop thread, under a time budget.

aiosqlite runs every statement on its connection's worker thread: two thread switches and a
future per read, which cost more than an indexed lookup itself (tens of microseconds) and, on a
busy 2-core machine, far more while the GIL changes hands. The gateway does two reads per
request (the API key, then its account), so that hop was most of its own cost.

So reads first run on a second, plain connection on the loop thread. SQLite's progress handler
interrupts a read that runs past `budget_seconds` (a scan of a big collection), and a read that
would wait for a lock gets SQLITE_BUSY at once (`timeout=0`); either way the caller re-runs it
on the worker thread. The loop is never blocked for much more than the budget. In WAL mode a
reader sees the last committed state, as reads on the writer's connection did between
transactions.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

DEFAULT_BUDGET_SECONDS: Final = 0.002
# The progress handler runs every this many SQLite VM instructions (tens of microseconds).
_CHECK_EVERY: Final = 1000
_GIVE_UP: Final = (sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class LoopReader:
    """Reads of `path` on the calling thread, each given up past the budget."""

    def __init__(self, path: Path, *, budget_seconds: float = DEFAULT_BUDGET_SECONDS) -> None:
        self._budget = budget_seconds
        self._deadline = 0.0
        # Not bound to one thread: a caller on another event loop (another thread) may read
        # too; the sqlite3 module serialises use of a connection.
        self._conn = sqlite3.connect(path, isolation_level=None, timeout=0, check_same_thread=False)
        self._conn.set_progress_handler(self._past_deadline, _CHECK_EVERY)

    def _past_deadline(self) -> int:
        return 1 if time.perf_counter() > self._deadline else 0

    def try_read(self, sql: str, params: Sequence[Any]) -> list[Any] | None:
        """Returns every row of `sql`, or None when it would take too long or wait for a lock."""
        self._deadline = time.perf_counter() + self._budget
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) in _GIVE_UP:
                return None
            raise

    def close(self) -> None:
        self._conn.close()
