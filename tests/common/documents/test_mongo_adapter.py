"""The MongoDB adapter's own duties that need no server (the contract suite covers the rest)."""

from __future__ import annotations

import time

import pytest
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from avc_common.documents import DocumentsError, DuplicateKey, UnsupportedQuery, open_documents
from avc_common.documents.mongo import _translated, _upsert_with_id

NOWHERE = "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300"


async def test_ping_raises_quickly_when_no_server_answers() -> None:
    db = await open_documents(NOWHERE, "svc")
    try:
        started = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - PyMongo's own connection error
            await db.ping()
        assert time.monotonic() - started < 5
    finally:
        await db.close()


async def test_refuses_unsupported_queries_before_reaching_the_server() -> None:
    db = await open_documents(NOWHERE, "svc")
    try:
        coll = db.collection("videos")
        with pytest.raises(UnsupportedQuery):
            await coll.find({"title": {"$regex": "^a"}})
        with pytest.raises(UnsupportedQuery):
            await coll.update_one({}, {"$mul": {"n": 2}})
        with pytest.raises(DocumentsError):
            await coll.replace_one({"title": "x"}, {"title": "y"}, upsert=True)
    finally:
        await db.close()


def test_translates_duplicate_key_errors() -> None:
    message = "E11000 duplicate key error collection: avc_svc.accounts index: email_1 dup key"
    details = {"code": 11000, "errmsg": message, "keyValue": {"email": "a@x"}}
    with pytest.raises(DuplicateKey) as raised, _translated():
        raise DuplicateKeyError(message, 11000, details)
    assert raised.value.key == {"email": "a@x"}
    assert raised.value.index == "email_1"
    with pytest.raises(DuplicateKey) as bulk, _translated():
        raise BulkWriteError({"writeErrors": [{**details, "index": 1}]})
    assert bulk.value.key == {"email": "a@x"}
    with pytest.raises(DocumentsError), _translated():
        raise OperationFailure("Cannot apply $inc to a value of non-numeric type", 14)


def test_upserts_get_string_ids_unless_the_filter_or_update_names_one() -> None:
    added = _upsert_with_id({"account_id": "a"}, {"$inc": {"n": 1}})
    assert added["$inc"] == {"n": 1}
    assert len(added["$setOnInsert"]["_id"]) == 24
    assert _upsert_with_id({"_id": "x"}, {"$inc": {"n": 1}}) == {"$inc": {"n": 1}}
    named = {"$setOnInsert": {"_id": "y"}}
    assert _upsert_with_id({"a": 1}, named) == named
