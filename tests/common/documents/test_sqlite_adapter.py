"""What only the SQLite adapter has: its file layout, WAL, index use and the TTL sweep."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from avc_common.documents import open_documents
from avc_common.documents.sqlite import SqliteDatabase
from avc_common.documents.sqlite.query import compile_filter


async def open_sqlite(folder: Path, **kwargs: float) -> SqliteDatabase:
    db = await open_documents(f"sqlite://{folder}", "svc", **kwargs)
    assert isinstance(db, SqliteDatabase)
    return db


def raw_rows(path: Path, table: str) -> list[tuple[str, str]]:
    with sqlite3.connect(path) as conn:
        return list(conn.execute(f'SELECT id, doc FROM "{table}" ORDER BY rowid'))


async def test_urls_name_a_folder_holding_one_file_per_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absolute = await open_documents(f"sqlite://{tmp_path}/abs/data", "media")
    await absolute.collection("videos").insert_one({"_id": "v1", "at": datetime(2026, 1, 1)})
    await absolute.close()
    assert (tmp_path / "abs" / "data" / "media.db").is_file()
    assert raw_rows(tmp_path / "abs" / "data" / "media.db", "videos") == [
        (
            '"v1"',
            json.dumps(
                {"_id": "v1", "at": "\U0010ffff2026-01-01T00:00:00.000Z"},
                separators=(",", ":"),
                ensure_ascii=False,
            ),
        )
    ]
    monkeypatch.chdir(tmp_path)
    relative = await open_documents("sqlite://rel/data", "stats")
    await relative.ping()
    await relative.close()
    assert (tmp_path / "rel" / "data" / "stats.db").is_file()


async def test_uses_wal_and_expression_indexes(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path)
    try:
        assert (await db.read("PRAGMA journal_mode", []))[0][0] == "wal"
        coll = db.collection("videos")
        await coll.create_index([("account_id", 1), ("created_at", -1)])
        await coll.insert_many([{"account_id": f"a{i % 5}", "created_at": i} for i in range(50)])
        for filter, index in (
            ({"account_id": "a1"}, "videos__account_id_1_created_at_-1"),
            ({"account_id": {"$in": ["a1", "a2"]}}, "videos__account_id_1_created_at_-1"),
            ({"_id": "x"}, "sqlite_autoindex_videos_1"),
        ):
            where, params = compile_filter(filter)
            plan = await db.read(f"EXPLAIN QUERY PLAN SELECT doc FROM videos WHERE {where}", params)
            assert any(index in row[3] for row in plan), (filter, plan)
    finally:
        await db.close()


async def test_ttl_sweep_deletes_expired_rows_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVC_SQLITE_TTL_SWEEP_SECONDS", "0.1")
    db = await open_sqlite(tmp_path)
    try:
        coll = db.collection("sessions")
        await coll.create_index([("expires_at", 1)], expire_after_seconds=1)
        soon = datetime.now(UTC) - timedelta(seconds=0.7)
        await coll.insert_many([{"_id": "soon", "expires_at": soon}, {"_id": "keep"}])
        # Hidden from reads once expired, then gone from the table after the next sweep.
        for _ in range(50):
            if await coll.count() == 1:
                break
            await asyncio.sleep(0.05)
        assert await coll.find({}) == [{"_id": "keep"}]
        for _ in range(50):
            if len(raw_rows(tmp_path / "svc.db", "sessions")) == 1:
                break
            await asyncio.sleep(0.05)
        assert [row[0] for row in raw_rows(tmp_path / "svc.db", "sessions")] == ['"keep"']
    finally:
        await db.close()


async def test_refuses_what_it_cannot_store_faithfully(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path)
    try:
        coll = db.collection("items")
        with pytest.raises(ValueError, match="U\\+10FFFF"):
            await coll.insert_one({"s": "\U0010ffffnot a date"})
        with pytest.raises(TypeError):
            await coll.insert_one({"s": {1, 2}})
        with pytest.raises(ValueError, match="collection names"):
            db.collection("bad name; DROP TABLE x")
        with pytest.raises(ValueError, match="sweep"):
            await open_documents(f"sqlite://{tmp_path}", "other", ttl_sweep_seconds=-1)
    finally:
        await db.close()


async def test_cancelled_writes_leave_the_connection_usable(tmp_path: Path) -> None:
    db = await open_sqlite(tmp_path)
    pause = random.Random(7)
    try:
        coll = db.collection("counters")
        await coll.insert_one({"_id": "c", "n": 0})
        for _ in range(100):
            # Cancel at arbitrary points, also between BEGIN and COMMIT.
            task = asyncio.create_task(coll.update_one({"_id": "c"}, {"$inc": {"n": 1}}))
            await asyncio.sleep(pause.uniform(0, 0.003))
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await coll.update_one({"_id": "c"}, {"$inc": {"n": 1}})
        doc = await coll.find_one({"_id": "c"})
        assert doc is not None
        assert 100 <= doc["n"] <= 200
    finally:
        await db.close()
