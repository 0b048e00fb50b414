"""Reads on the event-loop thread: used for short reads, and never where they could stall it."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from avc_common.documents.sqlite import SqliteDatabase, open_sqlite_database
from avc_common.documents.sqlite.loop_reader import LoopReader

# Counts to ten million: far more than any budget below allows on the loop thread.
SLOW_QUERY = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000000) "
    "SELECT count(*) FROM n"
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    made = await open_sqlite_database(tmp_path, "loop")
    yield made
    await made.close()


def worker_reads(db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every read that goes to aiosqlite's worker thread."""
    seen: list[str] = []
    conn = db._conn
    real = conn.execute_fetchall

    async def execute_fetchall(sql: str, params: Any = None) -> Any:
        seen.append(sql)
        return await real(sql, params)

    monkeypatch.setattr(conn, "execute_fetchall", execute_fetchall)
    return seen


async def test_point_reads_stay_on_the_loop_thread(
    db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = db.collection("keys")
    await keys.create_index([("key_hash", 1)], unique=True)
    await keys.insert_one({"_id": "key_1", "key_hash": "h1", "account_id": "acct_1"})
    seen = worker_reads(db, monkeypatch)
    # Written on the worker connection, read at once on the loop one (read-your-writes).
    assert (await keys.find_one({"key_hash": "h1"}) or {}).get("account_id") == "acct_1"
    assert await keys.find_one({"_id": "key_1"}) is not None
    assert await keys.count({}) == 1
    assert seen == []


async def test_a_read_past_the_budget_is_rerun_on_the_worker(
    db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    db.attach_reader(LoopReader(tmp_path / "loop.db", budget_seconds=0.001))
    seen = worker_reads(db, monkeypatch)
    assert await db.read(SLOW_QUERY, []) == [(10_000_000,)]
    assert seen == [SLOW_QUERY]


def test_reader_gives_up_past_its_budget(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "x.db").close()
    reader = LoopReader(tmp_path / "x.db", budget_seconds=0.001)
    try:
        assert reader.try_read(SLOW_QUERY, []) is None
        assert reader.try_read("SELECT 1 + ?", [1]) == [(2,)]
    finally:
        reader.close()


def test_reader_never_waits_for_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (x)")  # rollback-journal mode: a writer can lock readers out
    reader = LoopReader(path)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        assert reader.try_read("SELECT count(*) FROM t", []) is None
        writer.execute("COMMIT")
        assert reader.try_read("SELECT count(*) FROM t", []) == [(0,)]
    finally:
        reader.close()
        writer.close()


def test_other_errors_are_raised(tmp_path: Path) -> None:
    reader = LoopReader(tmp_path / "y.db")
    try:
        with pytest.raises(sqlite3.OperationalError, match="no such table"):
            reader.try_read("SELECT * FROM missing", [])
    finally:
        reader.close()
