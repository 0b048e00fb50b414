"""Contract suite for the documents port: the same behaviour on SQLite and on a real MongoDB."""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest

from avc_common.documents import (
    Collection,
    DocumentDatabase,
    DocumentsError,
    DuplicateKey,
    UnsupportedQuery,
    UpdateResult,
    open_documents,
)

if TYPE_CHECKING:
    from conftest import Backend

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")


def ids(docs: list[dict[str, Any]]) -> list[Any]:
    return [doc["_id"] for doc in docs]


async def find_ids(coll: Collection, filter: dict[str, Any]) -> list[Any]:
    """Returns the matching ids in `_id` order (MongoDB's natural order is not guaranteed)."""
    return ids(await coll.find(filter, sort=[("_id", 1)]))


async def seeded(db: DocumentDatabase, docs: list[dict[str, Any]]) -> Collection:
    coll = db.collection("items")
    await coll.insert_many(docs)
    return coll


# --- inserting and reading -------------------------------------------------------------------


async def test_round_trip_keeps_nested_values_and_datetimes_as_aware_utc(
    db: DocumentDatabase,
) -> None:
    coll = db.collection("videos")
    when = datetime(2026, 11, 26, 18, 0, 0, 123456, tzinfo=UTC)
    doc = {
        "_id": "vid_1",
        "title": "Ünïcode ✓",
        "n": 3,
        "ratio": 0.5,
        "ok": True,
        "none": None,
        "tags": ["a", "b"],
        "meta": {"size": 10, "when": when, "deep": {"list": [1, {"x": "y"}]}},
        "local": datetime(2026, 11, 26, 20, 0, tzinfo=timezone(timedelta(hours=2))),
        "naive": datetime(2026, 1, 1, 12, 0),
    }
    assert await coll.insert_one(doc) == "vid_1"
    found = await coll.find_one({"_id": "vid_1"})
    assert found is not None
    assert found["meta"]["when"] == when.replace(microsecond=123000)  # milliseconds, like BSON
    assert found["meta"]["when"].tzinfo is not None
    assert found["meta"]["when"].utcoffset() == timedelta(0)
    assert found["local"] == datetime(2026, 11, 26, 18, 0, tzinfo=UTC)
    assert found["naive"] == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    expected = {**doc, "meta": {**doc["meta"], "when": when.replace(microsecond=123000)}}
    assert {k: v for k, v in found.items() if k not in ("local", "naive")} == {
        k: v for k, v in expected.items() if k not in ("local", "naive")
    }


async def test_insert_without_id_gets_an_object_id_string(db: DocumentDatabase) -> None:
    coll = db.collection("items")
    original = {"n": 1}
    new_id = await coll.insert_one(original)
    assert isinstance(new_id, str)
    assert OBJECT_ID.match(new_id)
    assert original == {"n": 1}  # the caller's document is not changed
    assert await coll.find_one({"_id": new_id}) == {"_id": new_id, "n": 1}
    many = await coll.insert_many([{"n": 2}, {"_id": 7, "n": 3}])
    assert OBJECT_ID.match(many[0])
    assert many[1] == 7
    assert await coll.count() == 3


async def test_duplicate_id_raises_duplicate_key(db: DocumentDatabase) -> None:
    coll = db.collection("items")
    await coll.insert_one({"_id": "a", "n": 1})
    with pytest.raises(DuplicateKey) as raised:
        await coll.insert_one({"_id": "a", "n": 2})
    assert raised.value.key == {"_id": "a"}
    assert isinstance(raised.value, DocumentsError)
    assert await coll.find_one({"_id": "a"}) == {"_id": "a", "n": 1}
    # Ids of different types are different ids.
    await coll.insert_one({"_id": 1})
    await coll.insert_one({"_id": "1"})


async def test_insert_many_keeps_the_documents_before_a_duplicate(db: DocumentDatabase) -> None:
    coll = db.collection("items")
    await coll.insert_one({"_id": 2})
    with pytest.raises(DuplicateKey):
        await coll.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3}])
    assert sorted(await find_ids(coll, {})) == [1, 2]
    assert await coll.insert_many([]) == []


# --- indexes ----------------------------------------------------------------------------------


async def test_unique_index_refuses_duplicates_on_insert(db: DocumentDatabase) -> None:
    coll = db.collection("accounts")
    name = await coll.create_index([("email", 1)], unique=True)
    assert name == "email_1"
    await coll.insert_one({"_id": "a", "email": "x@example.com"})
    with pytest.raises(DuplicateKey) as raised:
        await coll.insert_one({"_id": "b", "email": "x@example.com"})
    assert raised.value.key == {"email": "x@example.com"}
    assert raised.value.index == "email_1"
    await coll.insert_one({"_id": "c", "email": "y@example.com"})
    assert await coll.count() == 2


async def test_unique_index_refuses_duplicates_on_update_and_upsert(db: DocumentDatabase) -> None:
    coll = db.collection("accounts")
    await coll.create_index([("email", 1)], unique=True)
    await coll.insert_many([{"_id": "a", "email": "a@x"}, {"_id": "b", "email": "b@x"}])
    with pytest.raises(DuplicateKey):
        await coll.update_one({"_id": "b"}, {"$set": {"email": "a@x"}})
    with pytest.raises(DuplicateKey):
        await coll.update_one({"_id": "new"}, {"$set": {"email": "a@x"}}, upsert=True)
    with pytest.raises(DuplicateKey):
        await coll.find_one_and_update({"_id": "b"}, {"$set": {"email": "a@x"}})
    with pytest.raises(DuplicateKey):
        await coll.replace_one({"_id": "b"}, {"email": "a@x"})
    assert await coll.find_one({"_id": "b"}) == {"_id": "b", "email": "b@x"}
    assert await coll.count() == 2


async def test_unique_compound_index_and_missing_fields(db: DocumentDatabase) -> None:
    coll = db.collection("keys")
    await coll.create_index([("account_id", 1), ("name", 1)], unique=True)
    await coll.insert_many([{"account_id": "a", "name": "k"}, {"account_id": "b", "name": "k"}])
    with pytest.raises(DuplicateKey):
        await coll.insert_one({"account_id": "a", "name": "k"})
    # A missing key field counts as null, as in MongoDB: the second such document collides.
    await coll.insert_one({"account_id": "c"})
    with pytest.raises(DuplicateKey):
        await coll.insert_one({"account_id": "c", "name": None})


async def test_partial_unique_index_only_covers_matching_documents(db: DocumentDatabase) -> None:
    coll = db.collection("uploads")
    await coll.create_index(
        [("idempotency_key", 1)],
        unique=True,
        name="idem",
        partial_filter={"idempotency_key": {"$exists": True}},
    )
    await coll.insert_many([{"n": 1}, {"n": 2}, {"idempotency_key": "k1"}])
    with pytest.raises(DuplicateKey) as raised:
        await coll.insert_one({"idempotency_key": "k1"})
    assert raised.value.index == "idem"
    assert await coll.count() == 3


async def test_create_index_is_idempotent_and_refuses_conflicting_options(
    db: DocumentDatabase,
) -> None:
    coll = db.collection("videos")
    keys = [("account_id", 1), ("created_at", -1)]
    assert await coll.create_index(keys) == "account_id_1_created_at_-1"
    assert await coll.create_index(keys) == "account_id_1_created_at_-1"
    assert await coll.create_index([("other", 1)], name="by_other") == "by_other"
    assert await coll.create_index([("other", 1)], name="by_other") == "by_other"
    with pytest.raises(DocumentsError):
        await coll.create_index([("third", 1)], name="by_other")  # the name is taken
    with pytest.raises(DocumentsError):
        await coll.create_index(keys, unique=True)  # same name, other options
    with pytest.raises(DocumentsError):
        await coll.create_index(keys, name="again")  # same keys under another name


# --- filters ----------------------------------------------------------------------------------

PEOPLE: list[dict[str, Any]] = [
    {"_id": 1, "name": "ann", "age": 31, "tags": ["a", "b"], "addr": {"city": "oslo", "zip": 1}},
    {"_id": 2, "name": "bob", "age": 25, "tags": ["b"], "addr": {"city": "rome"}},
    {"_id": 3, "name": "cid", "age": 40, "tags": [], "addr": None},
    {"_id": 4, "name": "dan", "age": 25.5, "ok": True},
    {"_id": 5, "name": "eve", "age": "40", "ok": False, "tags": "a"},
]


async def test_equality_on_top_level_and_dotted_paths(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    assert await find_ids(coll, {"name": "bob"}) == [2]
    assert await find_ids(coll, {"addr.city": "oslo"}) == [1]
    assert await find_ids(coll, {"addr": {"city": "rome"}}) == [2]
    assert await find_ids(coll, {"addr": {"zip": 1, "city": "oslo"}}) == []  # order matters
    assert await find_ids(coll, {"name": "bob", "age": 25}) == [2]
    assert await find_ids(coll, {"age": 40}) == [3]  # the string "40" is not the number 40
    assert await find_ids(coll, {"ok": True}) == [4]
    assert await find_ids(coll, {"age": {"$eq": 25}}) == [2]
    assert await find_ids(coll, {}) == [1, 2, 3, 4, 5]


async def test_none_matches_null_and_missing_fields(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    assert await find_ids(coll, {"addr": None}) == [3, 4, 5]
    assert await find_ids(coll, {"addr.city": None}) == [3, 4, 5]
    assert await find_ids(coll, {"addr": {"$ne": None}}) == [1, 2]
    assert await find_ids(coll, {"ok": {"$in": [None, False]}}) == [1, 2, 3, 5]


async def test_array_fields_match_by_element(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    assert await find_ids(coll, {"tags": "a"}) == [1, 5]
    assert await find_ids(coll, {"tags": "b"}) == [1, 2]
    assert await find_ids(coll, {"tags": ["b"]}) == [2]  # the whole array
    assert await find_ids(coll, {"tags": []}) == [3]
    assert await find_ids(coll, {"tags": {"$in": ["b", "z"]}}) == [1, 2]
    assert await find_ids(coll, {"tags": {"$ne": "b"}}) == [3, 4, 5]
    assert await find_ids(coll, {"tags": {"$nin": ["a", "b"]}}) == [3, 4]
    scores = db.collection("scores")
    await scores.insert_many([{"_id": "x", "s": [1, 9]}, {"_id": "y", "s": [4, 5]}])
    assert await find_ids(scores, {"s": {"$gt": 8}}) == ["x"]
    assert await find_ids(scores, {"s": {"$gt": 4, "$lt": 5}}) == ["x", "y"]  # per condition


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ({"$gt": 25}, [1, 3, 4]),
        ({"$gte": 25}, [1, 2, 3, 4]),
        ({"$lt": 31}, [2, 4]),
        ({"$lte": 31}, [1, 2, 4]),
        ({"$ne": 25}, [1, 3, 4, 5]),
        ({"$eq": 25.5}, [4]),
        ({"$gt": "3"}, [5]),  # strings compare with strings only
        ({"$gt": 25, "$lt": 40}, [1, 4]),
    ],
)
async def test_comparison_operators_bracket_by_type(
    db: DocumentDatabase, condition: dict[str, Any], expected: list[int]
) -> None:
    coll = await seeded(db, PEOPLE)
    assert await find_ids(coll, {"age": condition}) == expected


async def test_in_nin_and_exists(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    assert await find_ids(coll, {"name": {"$in": ["ann", "eve", "zed"]}}) == [1, 5]
    assert await find_ids(coll, {"age": {"$in": [25, "40"]}}) == [2, 5]
    assert await find_ids(coll, {"name": {"$in": []}}) == []
    assert await find_ids(coll, {"name": {"$nin": ["ann", "eve"]}}) == [2, 3, 4]
    assert await find_ids(coll, {"_id": {"$in": [2, 4, 99]}}) == [2, 4]
    assert await find_ids(coll, {"_id": {"$nin": [2, 4]}}) == [1, 3, 5]
    assert await find_ids(coll, {"ok": {"$exists": True}}) == [4, 5]
    assert await find_ids(coll, {"addr": {"$exists": True}}) == [1, 2, 3]  # null exists
    assert await find_ids(coll, {"addr.zip": {"$exists": False}}) == [2, 3, 4, 5]


async def test_and_or_combine(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    either = {"$or": [{"name": "ann"}, {"age": {"$lt": 26}}]}
    assert await find_ids(coll, either) == [1, 2, 4]
    both = {"$and": [{"age": {"$gte": 25}}, {"age": {"$lte": 31}}], "tags": "b"}
    assert await find_ids(coll, both) == [1, 2]
    nested = {"$or": [{"$and": [{"name": "dan"}, {"ok": True}]}, {"addr.city": "rome"}]}
    assert await find_ids(coll, nested) == [2, 4]


async def test_datetimes_compare_and_sort_chronologically(db: DocumentDatabase) -> None:
    coll = db.collection("events")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    await coll.insert_many(
        [
            {"_id": "late", "at": base + timedelta(days=400)},
            {"_id": "early", "at": base - timedelta(days=3)},
            {"_id": "mid", "at": base + timedelta(milliseconds=5)},
            {"_id": "text", "at": "2026-06-01"},
        ]
    )
    assert await find_ids(coll, {"at": {"$gt": base}}) == ["late", "mid"]
    assert await find_ids(coll, {"at": {"$lt": base}}) == ["early"]
    assert await find_ids(coll, {"at": {"$gte": base + timedelta(milliseconds=5)}}) == [
        "late",
        "mid",
    ]
    assert await find_ids(coll, {"at": base + timedelta(milliseconds=5)}) == ["mid"]
    dated = {"at": {"$gte": base - timedelta(days=10)}}
    assert ids(await coll.find(dated, sort=[("at", 1)])) == ["early", "mid", "late"]
    assert ids(await coll.find(dated, sort=[("at", -1)])) == ["late", "mid", "early"]


async def test_unsupported_filters_raise_clear_errors(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    for bad in (
        {"name": {"$regex": "^a"}},
        {"$where": "this.age > 3"},
        {"$nor": [{"name": "ann"}]},
        {"tags": {"$elemMatch": {"$eq": "a"}}},
        {"tags": {"$size": 2}},
        {"age": {"$not": {"$gt": 3}}},
        {"tags.0": "a"},
        {"$or": []},
        {"name": {"$eq": 1, "other": 2}},
    ):
        with pytest.raises(UnsupportedQuery):
            await coll.find(bad)
    with pytest.raises(UnsupportedQuery, match=r"\$regex"):
        await coll.count({"name": {"$regex": "a"}})
    with pytest.raises(UnsupportedQuery):
        await coll.update_one({"_id": 1}, {"$rename": {"a": "b"}})
    with pytest.raises(UnsupportedQuery):
        await coll.update_one({"_id": 1}, {"$push": {"tags": {"$each": ["c"], "$slice": 2}}})
    with pytest.raises(UnsupportedQuery):
        await coll.update_one({"_id": 1}, {"$pull": {"tags": {"$in": ["a"]}}})
    with pytest.raises(UnsupportedQuery):
        await coll.find({}, sort=[("age", 2)])


# --- sort, skip, limit, count -----------------------------------------------------------------


async def test_sort_multi_key_with_skip_and_limit(db: DocumentDatabase) -> None:
    coll = db.collection("videos")
    docs = [
        {"_id": f"v{i}", "account": "a" if i % 2 else "b", "views": i % 3, "meta": {"len": i}}
        for i in range(10)
    ]
    await coll.insert_many(docs)
    order = [("account", 1), ("views", -1), ("meta.len", 1)]
    expected = sorted(docs, key=lambda d: (d["account"], -d["views"], d["meta"]["len"]))
    assert await coll.find({}, sort=order) == expected
    assert await coll.find({}, sort=order, skip=3, limit=4) == expected[3:7]
    assert await coll.find({}, sort=order, skip=8, limit=10) == expected[8:]
    assert ids(await coll.find({"account": "a"}, sort=[("meta.len", -1)], limit=2)) == ["v9", "v7"]
    assert await coll.find_one({"account": "b"}, sort=[("meta.len", -1)]) == docs[8]
    assert await coll.find_one({"account": "zzz"}) is None


async def test_sort_puts_missing_and_null_first_then_numbers_then_strings(
    db: DocumentDatabase,
) -> None:
    coll = db.collection("mixed")
    await coll.insert_many(
        [
            {"_id": "s", "v": "a"},
            {"_id": "n2", "v": 2.5},
            {"_id": "missing"},
            {"_id": "n1", "v": -1},
            {"_id": "null", "v": None},
            {"_id": "s2", "v": "B"},
        ]
    )
    found = ids(await coll.find({}, sort=[("v", 1)]))
    assert set(found[:2]) == {"missing", "null"}
    assert found[2:] == ["n1", "n2", "s2", "s"]  # binary string order: "B" < "a"
    assert ids(await coll.find({}, sort=[("v", -1)]))[:4] == ["s", "s2", "n2", "n1"]


async def test_count_with_and_without_filter(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    assert await coll.count() == 5
    assert await coll.count({}) == 5
    assert await coll.count({"tags": "b"}) == 2
    assert await db.collection("empty").count() == 0


# --- updates ----------------------------------------------------------------------------------


async def test_set_and_unset_with_dotted_paths(db: DocumentDatabase) -> None:
    coll = db.collection("items")
    await coll.insert_one({"_id": "a", "x": 1, "meta": {"keep": True, "drop": 1}})
    result = await coll.update_one(
        {"_id": "a"},
        {"$set": {"meta.new.deep": "v", "y": [1]}, "$unset": {"meta.drop": "", "x": "", "no": ""}},
    )
    assert result == UpdateResult(matched_count=1, modified_count=1, upserted_id=None)
    assert await coll.find_one({"_id": "a"}) == {
        "_id": "a",
        "meta": {"keep": True, "new": {"deep": "v"}},
        "y": [1],
    }
    unchanged = await coll.update_one({"_id": "a"}, {"$set": {"y": [1]}})
    assert unchanged == UpdateResult(matched_count=1, modified_count=0)
    missing = await coll.update_one({"_id": "zzz"}, {"$set": {"y": 2}})
    assert missing == UpdateResult(matched_count=0, modified_count=0)


async def test_inc_adds_and_creates_missing_fields(db: DocumentDatabase) -> None:
    coll = db.collection("counters")
    await coll.insert_one({"_id": "c", "n": 1, "f": 1.5})
    await coll.update_one({"_id": "c"}, {"$inc": {"n": 2, "f": 1, "new": -3, "d.views": 1}})
    assert await coll.find_one({"_id": "c"}) == {
        "_id": "c",
        "n": 3,
        "f": 2.5,
        "d": {"views": 1},
        "new": -3,
    }
    with pytest.raises(DocumentsError):
        await coll.update_one({"_id": "c"}, {"$inc": {"d": 1}})  # not a number


async def test_add_to_set_and_push_with_each(db: DocumentDatabase) -> None:
    coll = db.collection("items")
    await coll.insert_one({"_id": "a", "tags": ["x"]})
    await coll.update_one({"_id": "a"}, {"$addToSet": {"tags": "x", "new": "n"}})
    await coll.update_one({"_id": "a"}, {"$addToSet": {"tags": {"$each": ["y", "x", "z", "y"]}}})
    await coll.update_one({"_id": "a"}, {"$push": {"log": {"at": 1}}})
    await coll.update_one({"_id": "a"}, {"$push": {"log": {"$each": [{"at": 2}, {"at": 1}]}}})
    assert await coll.find_one({"_id": "a"}) == {
        "_id": "a",
        "tags": ["x", "y", "z"],
        "new": ["n"],
        "log": [{"at": 1}, {"at": 2}, {"at": 1}],
    }
    same = await coll.update_one({"_id": "a"}, {"$addToSet": {"tags": "z"}})
    assert same.modified_count == 0
    await coll.update_one({"_id": "a"}, {"$set": {"flag": 1}})
    with pytest.raises(DocumentsError):
        await coll.update_one({"_id": "a"}, {"$push": {"flag": 2}})  # not an array


async def test_pull_removes_equal_elements(db: DocumentDatabase) -> None:
    coll = db.collection("items")
    await coll.insert_one(
        {"_id": "a", "tags": ["x", "y", "x", 1], "subs": [{"id": 1, "v": "a"}, {"id": 2}]}
    )
    await coll.update_one({"_id": "a"}, {"$pull": {"tags": "x", "subs": {"id": 1}}})
    assert await coll.find_one({"_id": "a"}) == {"_id": "a", "tags": ["y", 1], "subs": [{"id": 2}]}
    result = await coll.update_one({"_id": "a"}, {"$pull": {"tags": "nope", "missing": 1}})
    assert result.modified_count == 0


async def test_update_many_counts_matched_and_modified(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    result = await coll.update_many({"age": {"$lt": 30}}, {"$set": {"young": True}})
    assert result == UpdateResult(matched_count=2, modified_count=2)
    again = await coll.update_many({"age": {"$lt": 100}}, {"$set": {"young": True}})
    assert again == UpdateResult(matched_count=4, modified_count=2)
    assert await find_ids(coll, {"young": True}) == [1, 2, 3, 4]


async def test_upsert_seeds_from_filter_and_applies_set_on_insert(db: DocumentDatabase) -> None:
    coll = db.collection("stats")
    result = await coll.update_one(
        {"account_id": "acct_1", "day.date": "2026-11-26", "kind": {"$in": ["a", "b"]}},
        {"$inc": {"views": 1}, "$setOnInsert": {"created": True}},
        upsert=True,
    )
    assert result.matched_count == 0
    assert result.modified_count == 0
    assert isinstance(result.upserted_id, str)
    assert OBJECT_ID.match(result.upserted_id)
    doc = await coll.find_one({"_id": result.upserted_id})
    assert doc == {
        "_id": result.upserted_id,
        "account_id": "acct_1",
        "day": {"date": "2026-11-26"},
        "created": True,
        "views": 1,
    }
    again = await coll.update_one(
        {"account_id": "acct_1", "day.date": "2026-11-26"},
        {"$inc": {"views": 1}, "$setOnInsert": {"created": False}},
        upsert=True,
    )
    assert again == UpdateResult(matched_count=1, modified_count=1)
    assert await coll.find_one({"account_id": "acct_1"}) == {**doc, "views": 2}
    by_id = await coll.update_one(
        {"$and": [{"_id": "day:1"}, {"n": {"$eq": 5}}]}, {"$set": {"m": 1}}, upsert=True
    )
    assert by_id.upserted_id == "day:1"
    assert await coll.find_one({"_id": "day:1"}) == {"_id": "day:1", "n": 5, "m": 1}


async def test_find_one_and_update_returns_before_or_after(db: DocumentDatabase) -> None:
    coll = db.collection("jobs")
    await coll.insert_many(
        [
            {"_id": "j1", "state": "queued", "prio": 1},
            {"_id": "j2", "state": "queued", "prio": 5},
            {"_id": "j3", "state": "done", "prio": 9},
        ]
    )
    claimed = await coll.find_one_and_update(
        {"state": "queued"}, {"$set": {"state": "running"}}, sort=[("prio", -1)]
    )
    assert claimed == {"_id": "j2", "state": "running", "prio": 5}
    before = await coll.find_one_and_update(
        {"state": "queued"}, {"$inc": {"prio": 1}}, return_document="before"
    )
    assert before == {"_id": "j1", "state": "queued", "prio": 1}
    assert await coll.find_one({"_id": "j1"}) == {"_id": "j1", "state": "queued", "prio": 2}
    assert await coll.find_one_and_update({"state": "nope"}, {"$set": {"x": 1}}) is None
    created = await coll.find_one_and_update(
        {"_id": "j4"}, {"$set": {"state": "queued"}}, upsert=True
    )
    assert created == {"_id": "j4", "state": "queued"}
    nothing_before = await coll.find_one_and_update(
        {"_id": "j5"}, {"$set": {"state": "queued"}}, upsert=True, return_document="before"
    )
    assert nothing_before is None
    assert await coll.count({"state": "queued"}) == 3


async def test_replace_one_keeps_id_and_upserts_with_an_id(db: DocumentDatabase) -> None:
    coll = db.collection("items")
    await coll.insert_one({"_id": "a", "x": 1, "y": 2})
    result = await coll.replace_one({"x": 1}, {"z": 3})
    assert result == UpdateResult(matched_count=1, modified_count=1)
    assert await coll.find_one({"_id": "a"}) == {"_id": "a", "z": 3}
    upserted = await coll.replace_one({"_id": "b"}, {"z": 4}, upsert=True)
    assert upserted.upserted_id == "b"
    assert await coll.find_one({"_id": "b"}) == {"_id": "b", "z": 4}
    assert (await coll.replace_one({"_id": "zz"}, {"z": 5})).matched_count == 0
    with pytest.raises(DocumentsError):
        await coll.replace_one({"z": 9}, {"z": 9}, upsert=True)  # no _id to create it with
    with pytest.raises(DocumentsError):
        await coll.replace_one({"_id": "a"}, {"$set": {"z": 1}})


async def test_invalid_updates_are_refused(db: DocumentDatabase) -> None:
    coll = db.collection("items")
    await coll.insert_one({"_id": "a", "n": 1, "s": "text"})
    with pytest.raises(DocumentsError):
        await coll.update_one({"_id": "a"}, {"n": 2})  # a replacement, not an update
    with pytest.raises(DocumentsError):
        await coll.update_one({"_id": "a"}, {"$set": {"n": 2}, "$inc": {"n": 1}})
    with pytest.raises(DocumentsError):
        await coll.update_one({"_id": "a"}, {"$set": {"m": 2, "m.x": 1}})
    with pytest.raises(DocumentsError):
        await coll.update_one({"_id": "a"}, {"$set": {"_id": "b"}})  # ids are immutable
    with pytest.raises(DocumentsError):
        await coll.update_one({"_id": "a"}, {"$set": {"s.x": 1}})  # s is not a sub-document
    assert await coll.find_one({"_id": "a"}) == {"_id": "a", "n": 1, "s": "text"}


async def test_delete_one_and_many(db: DocumentDatabase) -> None:
    coll = await seeded(db, PEOPLE)
    assert await coll.delete_one({"age": 25}) == 1
    assert await coll.delete_one({"age": 25}) == 0
    assert await coll.delete_many({"tags": "a"}) == 2
    assert await find_ids(coll, {}) == [3, 4]
    assert await coll.delete_many({}) == 2
    assert await coll.count() == 0


# --- TTL --------------------------------------------------------------------------------------


async def test_ttl_index_expires_documents(backend: Backend, db: DocumentDatabase) -> None:
    coll = db.collection("sessions")
    await coll.create_index([("expires_at", 1)], expire_after_seconds=0)
    now = datetime.now(UTC)
    await coll.insert_many(
        [
            {"_id": "old", "expires_at": now - timedelta(minutes=5)},
            {"_id": "fresh", "expires_at": now + timedelta(hours=1)},
            {"_id": "no-date", "expires_at": "tomorrow"},
            {"_id": "none"},
        ]
    )
    # SQLite hides expired documents at once; MongoDB's TTL monitor runs about once a minute.
    deadline = asyncio.get_running_loop().time() + 90
    while await coll.count() != 3:
        assert asyncio.get_running_loop().time() < deadline, "TTL expiry took over 90 s"
        await asyncio.sleep(1)
    assert sorted(await find_ids(coll, {})) == ["fresh", "no-date", "none"]
    assert await coll.find_one({"_id": "old"}) is None
    # An expired document does not block its id from being used again.
    await coll.insert_one({"_id": "old", "expires_at": now + timedelta(hours=1)})


# --- concurrency ------------------------------------------------------------------------------


async def test_100_concurrent_increments_all_count(db: DocumentDatabase) -> None:
    coll = db.collection("counters")
    await coll.insert_one({"_id": "c", "n": 0})
    await asyncio.gather(*(coll.update_one({"_id": "c"}, {"$inc": {"n": 1}}) for _ in range(100)))
    assert await coll.find_one({"_id": "c"}) == {"_id": "c", "n": 100}


async def test_100_concurrent_add_to_set_keep_every_value(db: DocumentDatabase) -> None:
    coll = db.collection("sets")
    await coll.insert_one({"_id": "s", "v": []})
    await asyncio.gather(
        *(
            coll.update_one({"_id": "s"}, {"$addToSet": {"v": i}})
            if i % 2
            else coll.find_one_and_update({"_id": "s"}, {"$addToSet": {"v": i}})
            for i in range(100)
        )
    )
    doc = await coll.find_one({"_id": "s"})
    assert doc is not None
    assert sorted(doc["v"]) == list(range(100))


async def test_concurrent_updates_from_two_database_instances(backend: Backend) -> None:
    first, second = await backend.open(), await backend.open()
    one, two = first.collection("counters"), second.collection("counters")
    await one.insert_one({"_id": "c", "n": 0, "seen": []})
    await asyncio.gather(
        *(
            (one if i % 2 else two).update_one(
                {"_id": "c"}, {"$inc": {"n": 1}, "$addToSet": {"seen": i}}
            )
            for i in range(100)
        )
    )
    doc = await two.find_one({"_id": "c"})
    assert doc is not None
    assert doc["n"] == 100
    assert sorted(doc["seen"]) == list(range(100))


CHILD = """
import asyncio, sys
from avc_common.documents import open_documents

async def main(url, name, n):
    db = await open_documents(url, name)
    coll = db.collection("counters")
    print("ready", flush=True)
    for _ in range(n):
        await coll.update_one({"_id": "c"}, {"$inc": {"n": 1}})
    await db.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_concurrent_increments_from_another_os_process(
    backend: Backend, db: DocumentDatabase
) -> None:
    coll = db.collection("counters")
    await coll.insert_one({"_id": "c", "n": 0})
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, backend.url, backend.name, "150",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    assert await asyncio.wait_for(child.stdout.readline(), 30) == b"ready\n"
    for _ in range(150):
        await coll.update_one({"_id": "c"}, {"$inc": {"n": 1}})
    assert await asyncio.wait_for(child.wait(), 60) == 0
    assert await coll.find_one({"_id": "c"}) == {"_id": "c", "n": 300}


# --- lifecycle --------------------------------------------------------------------------------


async def test_close_and_reopen_keeps_data_and_indexes(backend: Backend) -> None:
    first = await backend.open()
    coll = first.collection("accounts")
    await coll.create_index([("email", 1)], unique=True)
    await coll.insert_one({"_id": "a", "email": "a@x", "at": datetime(2026, 1, 1, tzinfo=UTC)})
    await first.ping()
    await first.close()
    again = await backend.open()
    reopened = again.collection("accounts")
    assert await reopened.find_one({"email": "a@x"}) == {
        "_id": "a",
        "email": "a@x",
        "at": datetime(2026, 1, 1, tzinfo=UTC),
    }
    with pytest.raises(DuplicateKey):
        await reopened.insert_one({"email": "a@x"})


async def test_drop_removes_everything(db: DocumentDatabase) -> None:
    await db.collection("a").insert_one({"_id": 1})
    await db.collection("b").create_index([("k", 1)], unique=True)
    await db.collection("b").insert_one({"k": 1})
    await db.drop()
    assert await db.collection("a").count() == 0
    await db.collection("b").insert_many([{"k": 1}, {"k": 1}])  # the unique index went too
    await db.ping()


async def test_open_documents_rejects_unknown_schemes() -> None:
    for url in ("postgres://db/x", "redis://localhost", "/plain/path", "sqlite://", "mongodb://"):
        with pytest.raises(ValueError, match="sqlite"):
            await open_documents(url, "svc")
