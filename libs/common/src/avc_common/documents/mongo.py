"""The MongoDB adapter: a thin pass-through to PyMongo's `AsyncMongoClient`.

It only checks the port's language (so both adapters refuse the same things), names ids the
port's way (ObjectId-like strings) and translates PyMongo's errors and option names.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC
from typing import Any

from pymongo import AsyncMongoClient
from pymongo import ReturnDocument as PyMongoReturn
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure
from pymongo.results import UpdateResult as MongoUpdateResult

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

Doc = dict[str, Any]
_DUPLICATE_KEY = 11000
_INDEX_IN_MESSAGE = re.compile(r"index: (\S+)")


def _duplicate(details: Mapping[str, Any] | None) -> DuplicateKey:
    details = details or {}
    message = str(details.get("errmsg", "duplicate key"))
    found = _INDEX_IN_MESSAGE.search(message)
    return DuplicateKey(
        message, key=details.get("keyValue"), index=found.group(1) if found else None
    )


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    try:
        yield
    except DuplicateKeyError as exc:
        raise _duplicate(exc.details) from exc
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if errors and errors[0].get("code") == _DUPLICATE_KEY:
            raise _duplicate(errors[0]) from exc
        raise DocumentsError(str(exc)) from exc
    except OperationFailure as exc:
        raise DocumentsError(str(exc)) from exc


def _with_id(doc: Mapping[str, Any]) -> Doc:
    return dict(doc) if "_id" in doc else {"_id": lang.new_object_id(), **doc}


def _upsert_with_id(filter: Filter, update: Update) -> Update:
    """Returns `update` that gives an upserted document a string `_id` like SQLite does."""
    if "_id" in lang.upsert_seed(filter) or any("_id" in fields for fields in update.values()):
        return update
    on_insert = {**update.get("$setOnInsert", {}), "_id": lang.new_object_id()}
    return {**update, "$setOnInsert": on_insert}


def _result(result: MongoUpdateResult) -> UpdateResult:
    return UpdateResult(result.matched_count, result.modified_count, result.upserted_id)


async def open_mongo_database(url: str, name: str) -> MongoDatabase:
    """Returns the database `avc_<name>` on the server at `url` (connects lazily)."""
    client: AsyncMongoClient[Doc] = AsyncMongoClient(url, tz_aware=True, tzinfo=UTC)
    return MongoDatabase(client, client[f"avc_{name}"])


class MongoDatabase(DocumentDatabase):
    def __init__(self, client: AsyncMongoClient[Doc], db: AsyncDatabase[Doc]) -> None:
        self._client = client
        self._db = db

    def collection(self, name: str) -> MongoCollection:
        return MongoCollection(self._db[name])

    async def ping(self) -> None:
        await self._db.command("ping")

    async def close(self) -> None:
        await self._client.close()

    async def drop(self) -> None:
        await self._client.drop_database(self._db.name)


class MongoCollection(Collection):
    def __init__(self, coll: AsyncCollection[Doc]) -> None:
        self.name = coll.name
        self._coll = coll

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
        options: dict[str, Any] = {"name": name, "unique": unique}
        if expire_after_seconds is not None:
            options["expireAfterSeconds"] = expire_after_seconds
        if partial_filter is not None:
            options["partialFilterExpression"] = partial_filter
        with _translated():
            return await self._coll.create_index(list(keys), **options)

    async def insert_one(self, doc: Mapping[str, Any]) -> Any:
        doc = _with_id(doc)
        with _translated():
            await self._coll.insert_one(doc)
        return doc["_id"]

    async def insert_many(self, docs: Sequence[Mapping[str, Any]]) -> list[Any]:
        prepared = [_with_id(doc) for doc in docs]
        if prepared:  # PyMongo refuses an empty batch; the port treats it as a no-op
            with _translated():
                await self._coll.insert_many(prepared, ordered=True)
        return [doc["_id"] for doc in prepared]

    async def find_one(self, filter: Filter, *, sort: Sort | None = None) -> Doc | None:
        lang.check_filter(filter)
        lang.check_sort(sort)
        with _translated():
            return await self._coll.find_one(filter, sort=list(sort) if sort else None)

    async def find(
        self, filter: Filter, *, sort: Sort | None = None, skip: int = 0, limit: int = 0
    ) -> list[Doc]:
        lang.check_filter(filter)
        lang.check_sort(sort)
        lang.check_page(skip, limit)
        cursor = self._coll.find(filter, sort=list(sort) if sort else None, skip=skip, limit=limit)
        with _translated():
            return await cursor.to_list()

    async def count(self, filter: Filter | None = None) -> int:
        lang.check_filter(filter or {})
        with _translated():
            return await self._coll.count_documents(filter or {})

    async def update_one(
        self, filter: Filter, update: Update, *, upsert: bool = False
    ) -> UpdateResult:
        lang.check_filter(filter)
        lang.check_update(update)
        if upsert:
            update = _upsert_with_id(filter, update)
        with _translated():
            return _result(await self._coll.update_one(filter, update, upsert=upsert))

    async def update_many(self, filter: Filter, update: Update) -> UpdateResult:
        lang.check_filter(filter)
        lang.check_update(update)
        with _translated():
            return _result(await self._coll.update_many(filter, update))

    async def find_one_and_update(
        self,
        filter: Filter,
        update: Update,
        *,
        upsert: bool = False,
        sort: Sort | None = None,
        return_document: ReturnDocument = "after",
    ) -> Doc | None:
        lang.check_filter(filter)
        lang.check_update(update)
        lang.check_sort(sort)
        if upsert:
            update = _upsert_with_id(filter, update)
        which = PyMongoReturn.AFTER if return_document == "after" else PyMongoReturn.BEFORE
        with _translated():
            return await self._coll.find_one_and_update(
                filter,
                update,
                upsert=upsert,
                sort=list(sort) if sort else None,
                return_document=which,
            )

    async def replace_one(
        self, filter: Filter, doc: Mapping[str, Any], *, upsert: bool = False
    ) -> UpdateResult:
        lang.check_filter(filter)
        lang.check_replacement(doc)
        lang.check_replace_upsert(filter, doc, upsert)
        with _translated():
            return _result(await self._coll.replace_one(filter, doc, upsert=upsert))

    async def delete_one(self, filter: Filter) -> int:
        lang.check_filter(filter)
        with _translated():
            return (await self._coll.delete_one(filter)).deleted_count

    async def delete_many(self, filter: Filter) -> int:
        lang.check_filter(filter)
        with _translated():
            return (await self._coll.delete_many(filter)).deleted_count
