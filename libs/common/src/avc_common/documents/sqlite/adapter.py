"""The embedded documents adapter: one SQLite file per service, one table per collection.

Each table is `(id TEXT PRIMARY KEY, doc TEXT)` holding the document as JSON (`codec`). Filters
compile to SQL (`query`), updates are applied in Python (`update`) inside `BEGIN IMMEDIATE`
transactions, so read-modify-write is atomic even across OS processes sharing the file; a writer
that finds the file locked waits (`busy_timeout`) and then retries.

TTL indexes: documents whose date field is older than `expire_after_seconds` are treated as
absent by every read at once, purged at the start of every write to their collection (so they
never block a unique key), and deleted by a background sweep every `ttl_sweep_seconds` (default
60 s, or `AVC_SQLITE_TTL_SWEEP_SECONDS`).

Unique indexes treat a missing field as null, like MongoDB: two documents without the field
collide unless a partial filter leaves them out.

Known differences from MongoDB, outside what services rely on: `update_many` is all-or-nothing
when it hits a duplicate key (MongoDB keeps the documents updated before it); an index over an
array field indexes the array as one value (MongoDB indexes each element); arrays sort as one
block rather than by their smallest/largest element; a TTL index declared by another process is
honoured by this one's reads after its next sweep.
"""

# SQL text is built only from checked names and JSON paths; values are always bound.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import sqlite3
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any, Final, TypeVar

import aiosqlite

from avc_common.documents import language as lang
from avc_common.documents.base import (
    Collection,
    DocumentDatabase,
    Filter,
    ReturnDocument,
    Sort,
    Update,
    UpdateResult,
)
from avc_common.documents.errors import DocumentsError, DuplicateKey
from avc_common.documents.sqlite import codec
from avc_common.documents.sqlite.loop_reader import LoopReader
from avc_common.documents.sqlite.query import (
    compile_filter,
    compile_index_filter,
    compile_sort,
    field,
)
from avc_common.documents.sqlite.update import apply_update
from avc_common.logging import get_logger
from avc_common.private_paths import PRIVATE_FILE, private_dir, private_file, tighten
from avc_common.timeutil import utcnow

T = TypeVar("T")
log = get_logger(__name__)

SWEEP_ENV: Final = "AVC_SQLITE_TTL_SWEEP_SECONDS"
_BUSY_TIMEOUT_MS: Final = 5_000
_BUSY_RETRY_SECONDS: Final = 60.0
_COLLECTION_NAME: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,62}$")
_META: Final = "_avc_indexes"
_UNIQUE_FAILED: Final = re.compile(r"UNIQUE constraint failed: (?:index '([^']+)'|.*\.id\b)")


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _with_id_first(doc: dict[str, Any], doc_id: Any) -> dict[str, Any]:
    if isinstance(doc_id, list):
        raise DocumentsError("an _id cannot be an array")
    return {"_id": doc_id, **{k: v for k, v in doc.items() if k != "_id"}}


async def open_sqlite_database(
    folder: Path, name: str, *, ttl_sweep_seconds: float | None = None
) -> SqliteDatabase:
    """Returns the database `<folder>/<name>.db` (folder and file created when missing).

    The folder is 0700 and the database 0600 (SQLite gives its -wal and -shm files the
    database's mode): they hold account data and, for webhooks, signing secrets."""
    sweep = ttl_sweep_seconds if ttl_sweep_seconds else float(os.environ.get(SWEEP_ENV, "60"))
    if sweep <= 0:
        raise ValueError("the TTL sweep interval must be positive")
    path = folder / f"{name}.db"
    await asyncio.to_thread(_private_database, folder, path)
    conn = await aiosqlite.connect(path, isolation_level=None)
    db = SqliteDatabase(conn, sweep_seconds=sweep)
    try:
        await db.setup()
        await asyncio.to_thread(_private_sidecars, path)
        # After setup: WAL mode is on, so this reader never blocks the writer.
        db.attach_reader(LoopReader(path))
    except BaseException:
        await db.close()
        raise
    return db


def _private_database(folder: Path, path: Path) -> None:
    private_dir(folder)
    private_file(path)
    _private_sidecars(path)


def _private_sidecars(path: Path) -> None:
    # Made 0600 by SQLite from the database's mode; older ones may be 0644.
    for suffix in ("-wal", "-shm", "-journal"):
        tighten(f"{path}{suffix}", PRIVATE_FILE)


class SqliteDatabase(DocumentDatabase):
    def __init__(self, conn: aiosqlite.Connection, *, sweep_seconds: float) -> None:
        self._conn = conn
        # One connection runs one transaction at a time; the lock keeps coroutines from
        # interleaving statements into each other's transactions.
        self._lock = asyncio.Lock()
        self._collections: dict[str, SqliteCollection] = {}
        self._tables: set[str] = set()
        self._sweep_seconds = sweep_seconds
        self._sweeper: asyncio.Task[None] | None = None
        self._reader: LoopReader | None = None
        self._closed = False

    async def setup(self) -> None:
        await self._conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        await self._conn.execute("PRAGMA journal_mode = WAL")
        await self._conn.execute("PRAGMA synchronous = NORMAL")
        await self.write(self._create_meta)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="avc-sqlite-ttl-sweep")

    @staticmethod
    async def _create_meta(conn: aiosqlite.Connection) -> None:
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_META} "
            "(coll TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, PRIMARY KEY (coll, name))"
        )

    def attach_reader(self, reader: LoopReader) -> None:
        """Reads try `reader` on the loop thread first (see loop_reader)."""
        self._reader = reader

    def collection(self, name: str) -> SqliteCollection:
        if not _COLLECTION_NAME.match(name):
            raise ValueError(f"collection names are letters, digits and '_': {name!r}")
        if name not in self._collections:
            self._collections[name] = SqliteCollection(self, name)
        return self._collections[name]

    async def ping(self) -> None:
        await self.read("SELECT 1", [])

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        await self._conn.close()

    async def drop(self) -> None:
        async def drop_all(conn: aiosqlite.Connection) -> None:
            rows = await conn.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
            for row in rows:
                await conn.execute(f'DROP TABLE "{row[0]}"')
            await self._create_meta(conn)

        await self.write(drop_all)
        self._tables.clear()
        for coll in self._collections.values():
            coll.forget_indexes()

    async def read(self, sql: str, params: Sequence[Any]) -> list[Any]:
        """Returns all rows of one statement (WAL readers see the last committed state)."""
        if self._reader is not None:
            rows = self._reader.try_read(sql, params)
            if rows is not None:
                return rows
        async with self._lock:
            return list(await self._conn.execute_fetchall(sql, params))

    async def write(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Returns `work`'s result, run in a `BEGIN IMMEDIATE` transaction, retried while busy."""
        # Shielded: a caller cancelled mid-transaction must not leave BEGIN without COMMIT or
        # ROLLBACK on the shared connection; the transaction finishes and its result is dropped.
        return await asyncio.shield(self._transaction(work))

    async def _transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _BUSY_RETRY_SECONDS
        async with self._lock:
            while True:
                try:
                    await self._conn.execute("BEGIN IMMEDIATE")
                    break
                except sqlite3.OperationalError as exc:
                    # busy_timeout already waited; another process holds the write lock long.
                    if not _busy(exc) or loop.time() > deadline:
                        raise
                    await asyncio.sleep(random.uniform(0.01, 0.1))
            try:
                result = await work(self._conn)
                await self._conn.execute("COMMIT")
                return result
            except BaseException:
                if self._conn.in_transaction:
                    await self._conn.execute("ROLLBACK")
                raise

    async def ensure_table(self, name: str) -> None:
        if name in self._tables:
            return
        await self.write(
            lambda c: c.execute(
                f'CREATE TABLE IF NOT EXISTS "{name}" (id TEXT PRIMARY KEY, doc TEXT NOT NULL)'
            )
        )
        self._tables.add(name)

    async def sweep_expired(self) -> int:
        """Returns how many expired documents were deleted from every TTL-indexed collection."""
        rows = await self.read(f"SELECT coll FROM {_META}", [])
        deleted = 0
        for name in sorted({row[0] for row in rows}):
            coll = self.collection(name)
            coll.forget_indexes()
            deleted += await coll.purge_expired()
        return deleted

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_seconds)
            try:
                await self.sweep_expired()
            except Exception as exc:
                # Retried at the next interval.
                log.warning("sqlite_ttl_sweep_failed", error=str(exc), exc_info=exc)


class SqliteCollection(Collection):
    def __init__(self, db: SqliteDatabase, name: str) -> None:
        self.name = name
        self._db = db
        self._t = f'"{name}"'
        self._indexes: dict[str, dict[str, Any]] | None = None

    def forget_indexes(self) -> None:
        """Drops cached index specs (another process may have declared more)."""
        self._indexes = None

    async def _ready(self) -> dict[str, dict[str, Any]]:
        await self._db.ensure_table(self.name)
        if self._indexes is None:
            rows = await self._db.read(
                f"SELECT name, spec FROM {_META} WHERE coll = ?", [self.name]
            )
            self._indexes = {row[0]: codec.loads(row[1]) for row in rows}
        return self._indexes

    def _ttl_fields(self) -> list[tuple[str, int]]:
        return [
            (spec["keys"][0][0], spec["ttl"])
            for spec in (self._indexes or {}).values()
            if spec["ttl"] is not None
        ]

    def _where(self, filter: Filter) -> tuple[str, list[Any]]:
        lang.check_filter(filter)
        sql, params = compile_filter(filter)
        for path, seconds in self._ttl_fields():
            cutoff = codec.encode(utcnow() - timedelta(seconds=seconds))
            x = field(path)
            sql = f"({sql}) AND NOT ({x} IS NOT NULL AND {x} >= char(1114111) AND {x} < ?)"
            params.append(cutoff)
        return sql, params

    async def _purge(self, conn: aiosqlite.Connection) -> int:
        deleted = 0
        for path, seconds in self._ttl_fields():
            cutoff = codec.encode(utcnow() - timedelta(seconds=seconds))
            x = field(path)
            cursor = await conn.execute(
                f"DELETE FROM {self._t} WHERE {x} >= char(1114111) AND {x} < ?", [cutoff]
            )
            deleted += cursor.rowcount
        return deleted

    async def purge_expired(self) -> int:
        """Returns how many expired documents were deleted."""
        await self._ready()
        return await self._db.write(self._purge) if self._ttl_fields() else 0

    def _duplicate(self, exc: sqlite3.IntegrityError, doc: Mapping[str, Any]) -> DuplicateKey:
        found = _UNIQUE_FAILED.search(str(exc))
        if found is None:
            raise DocumentsError(str(exc)) from exc
        if found.group(1) is None:
            key, index = {"_id": codec.decode(doc["_id"])}, "_id_"
        else:
            index = found.group(1).removeprefix(f"{self.name}__")
            spec = (self._indexes or {}).get(index, {"keys": []})
            key = {path: codec.decode(_get(doc, path)) for path, _ in spec["keys"]}
        return DuplicateKey(
            f"duplicate key in {self.name} index {index}: {key!r}", key=key, index=index
        )

    async def create_index(
        self,
        keys: Sequence[tuple[str, int]],
        *,
        unique: bool = False,
        expire_after_seconds: int | None = None,
        name: str | None = None,
        partial_filter: Mapping[str, Any] | None = None,
    ) -> str:
        name = name or lang.index_name(keys)
        lang.check_index(keys, name, expire_after_seconds, partial_filter)
        spec = {
            "keys": [[path, direction] for path, direction in keys],
            "unique": unique,
            "ttl": expire_after_seconds,
            "partial": codec.encode(partial_filter) if partial_filter is not None else None,
        }
        await self._ready()

        async def create(conn: aiosqlite.Connection) -> None:
            rows = await conn.execute_fetchall(
                f"SELECT name, spec FROM {_META} WHERE coll = ?", [self.name]
            )
            existing = {row[0]: codec.loads(row[1]) for row in rows}
            if existing.get(name) == spec:
                return
            if name in existing:
                raise DocumentsError(f"index {name!r} exists on {self.name} with other options")
            # MongoDB refuses a second index on the same keys (and partial filter) by name.
            for other, other_spec in existing.items():
                if (other_spec["keys"], other_spec["partial"]) == (spec["keys"], spec["partial"]):
                    raise DocumentsError(f"index {other!r} on {self.name} has the same keys")
            where = f" WHERE {compile_index_filter(partial_filter)}" if partial_filter else ""
            columns = [(field(p), "ASC" if d == 1 else "DESC") for p, d in keys]
            plain = ", ".join(f"{x} {word}" for x, word in columns)
            if unique:
                # SQLite lets NULLs repeat in a unique index; MongoDB indexes missing as null.
                nulls = ", ".join(f"coalesce({x}, x'00') {word}" for x, word in columns)
                await conn.execute(
                    f'CREATE UNIQUE INDEX "{self.name}__{name}" ON {self._t} ({nulls}){where}'
                )
            suffix = "__lookup" if unique else ""
            await conn.execute(
                f'CREATE INDEX "{self.name}__{name}{suffix}" ON {self._t} ({plain}){where}'
            )
            await conn.execute(
                f"INSERT INTO {_META} (coll, name, spec) VALUES (?, ?, ?)",
                [self.name, name, codec.dumps(spec)],
            )

        await self._db.write(create)
        self.forget_indexes()
        return name

    async def insert_one(self, doc: Mapping[str, Any]) -> Any:
        return (await self.insert_many([doc]))[0]

    async def insert_many(self, docs: Sequence[Mapping[str, Any]]) -> list[Any]:
        encoded = [codec.encode(doc) for doc in docs]
        prepared = [
            _with_id_first(d, d["_id"] if "_id" in d else lang.new_object_id()) for d in encoded
        ]
        await self._ready()
        failure: DuplicateKey | None = None

        async def insert(conn: aiosqlite.Connection) -> None:
            nonlocal failure
            await self._purge(conn)
            for doc in prepared:
                try:
                    await conn.execute(
                        f"INSERT INTO {self._t} (id, doc) VALUES (?, ?)",
                        [codec.id_key(doc["_id"]), codec.dumps(doc)],
                    )
                except sqlite3.IntegrityError as exc:
                    # Like MongoDB's ordered insert: the documents before the duplicate stay.
                    failure = self._duplicate(exc, doc)
                    return

        await self._db.write(insert)
        if failure is not None:
            raise failure
        return [codec.decode(doc["_id"]) for doc in prepared]

    async def find_one(self, filter: Filter, *, sort: Sort | None = None) -> dict[str, Any] | None:
        found = await self.find(filter, sort=sort, limit=1)
        return found[0] if found else None

    async def find(
        self, filter: Filter, *, sort: Sort | None = None, skip: int = 0, limit: int = 0
    ) -> list[dict[str, Any]]:
        lang.check_sort(sort)
        lang.check_page(skip, limit)
        await self._ready()
        where, params = self._where(filter)
        rows = await self._db.read(
            f"SELECT doc FROM {self._t} WHERE {where} {compile_sort(sort)} LIMIT ? OFFSET ?",
            [*params, limit or -1, skip],
        )
        return [codec.decode(codec.loads(row[0])) for row in rows]

    async def count(self, filter: Filter | None = None) -> int:
        await self._ready()
        where, params = self._where(filter or {})
        rows = await self._db.read(f"SELECT count(*) FROM {self._t} WHERE {where}", params)
        return int(rows[0][0])

    async def _modify(
        self,
        filter: Filter,
        *,
        update: Update | None = None,
        replacement: Mapping[str, Any] | None = None,
        upsert: bool = False,
        sort: Sort | None = None,
        many: bool = False,
    ) -> tuple[UpdateResult, dict[str, Any] | None, dict[str, Any] | None]:
        """Returns (counts, first document before, first document after) of one atomic change."""
        if update is not None:
            lang.check_update(update)
        if replacement is not None:
            lang.check_replacement(replacement)
            lang.check_replace_upsert(filter, replacement, upsert)
        new_doc = codec.encode(replacement) if replacement is not None else {}
        lang.check_sort(sort)
        await self._ready()
        where, params = self._where(filter)
        limit = "" if many else " LIMIT 1"
        select = f"SELECT id, doc FROM {self._t} WHERE {where} {compile_sort(sort)}{limit}"

        async def modify(
            conn: aiosqlite.Connection,
        ) -> tuple[UpdateResult, dict[str, Any] | None, dict[str, Any] | None]:
            await self._purge(conn)
            rows = list(await conn.execute_fetchall(select, params))
            first: tuple[dict[str, Any], dict[str, Any]] | None = None
            modified = 0
            for row_id, text in rows:
                old = codec.loads(text)
                if update is not None:
                    new = apply_update(old, update, inserting=False)
                else:
                    new = _with_id_first(new_doc, new_doc.get("_id", old["_id"]))
                if not _same_id(new, old):
                    raise DocumentsError("the _id of a document cannot change")
                first = first or (old, new)
                if codec.dumps(new) != text:
                    modified += 1
                    try:
                        await conn.execute(
                            f"UPDATE {self._t} SET doc = ? WHERE id = ?", [codec.dumps(new), row_id]
                        )
                    except sqlite3.IntegrityError as exc:
                        raise self._duplicate(exc, new) from None
            if first is not None:
                return UpdateResult(len(rows), modified), first[0], first[1]
            if not upsert:
                return UpdateResult(0, 0), None, None
            seed = codec.encode(lang.upsert_seed(filter))
            if update is not None:
                created = apply_update(seed, update, inserting=True)
            else:  # a replacement keeps only the filter's _id, like MongoDB
                created = {"_id": seed.get("_id"), **new_doc}
            created = _with_id_first(created, created.get("_id", lang.new_object_id()))
            try:
                await conn.execute(
                    f"INSERT INTO {self._t} (id, doc) VALUES (?, ?)",
                    [codec.id_key(created["_id"]), codec.dumps(created)],
                )
            except sqlite3.IntegrityError as exc:
                raise self._duplicate(exc, created) from None
            return UpdateResult(0, 0, codec.decode(created["_id"])), None, created

        return await self._db.write(modify)

    async def update_one(
        self, filter: Filter, update: Update, *, upsert: bool = False
    ) -> UpdateResult:
        return (await self._modify(filter, update=update, upsert=upsert))[0]

    async def update_many(self, filter: Filter, update: Update) -> UpdateResult:
        return (await self._modify(filter, update=update, many=True))[0]

    async def find_one_and_update(
        self,
        filter: Filter,
        update: Update,
        *,
        upsert: bool = False,
        sort: Sort | None = None,
        return_document: ReturnDocument = "after",
    ) -> dict[str, Any] | None:
        _, before, after = await self._modify(filter, update=update, upsert=upsert, sort=sort)
        chosen = after if return_document == "after" else before
        return None if chosen is None else dict(codec.decode(chosen))

    async def replace_one(
        self, filter: Filter, doc: Mapping[str, Any], *, upsert: bool = False
    ) -> UpdateResult:
        return (await self._modify(filter, replacement=doc, upsert=upsert))[0]

    async def delete_one(self, filter: Filter) -> int:
        return await self._delete(filter, limit=" LIMIT 1")

    async def delete_many(self, filter: Filter) -> int:
        return await self._delete(filter, limit="")

    async def _delete(self, filter: Filter, *, limit: str) -> int:
        await self._ready()
        where, params = self._where(filter)
        picked = f"SELECT rowid FROM {self._t} WHERE {where}{limit}"
        sql = f"DELETE FROM {self._t} WHERE rowid IN ({picked})"

        async def delete(conn: aiosqlite.Connection) -> int:
            cursor = await conn.execute(sql, params)
            return cursor.rowcount

        return await self._db.write(delete)


def _same_id(new: Mapping[str, Any], old: Mapping[str, Any]) -> bool:
    return codec.id_key(new.get("_id")) == codec.id_key(old.get("_id"))


def _get(doc: Mapping[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node
