"""Property tests: the SQLite adapter's filters and sorts agree with MongoDB's rules in Python.

`matches` below is a small reference of MongoDB's semantics for the port's filter language,
written straight from the MongoDB manual; hypothesis searches for a document set and a filter
on which the SQL compiled by the adapter disagrees with it.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from avc_common.documents import open_documents

MISSING: Any = object()
DATES = [datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 0, 0, 0, 5000, tzinfo=UTC)]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([-1, 0, 1, 2, 2.0, 2.5]),
    st.sampled_from(["", "x", "y", "X", "é", "[1]", "1"]),
    st.sampled_from(DATES),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
DOCS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "a": VALUES,
            "b": st.one_of(SCALARS, st.fixed_dictionaries({}, optional={"c": VALUES})),
            "k": SCALARS,
        },
    ),
    max_size=10,
)
PATHS = st.sampled_from(["a", "b", "b.c", "k"])
LEAVES = st.one_of(
    st.builds(lambda p, v: {p: v}, PATHS, VALUES),
    st.builds(
        lambda p, op, v: {p: {op: v}},
        PATHS,
        st.sampled_from(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte"]),
        SCALARS,
    ),
    st.builds(lambda p, op, v: {p: {op: v}}, PATHS, st.sampled_from(["$eq", "$ne"]), VALUES),
    st.builds(
        lambda p, op, v: {p: {op: v}},
        PATHS,
        st.sampled_from(["$in", "$nin"]),
        st.lists(VALUES, max_size=3),
    ),
    st.builds(lambda p, v: {p: {"$exists": v}}, PATHS, st.booleans()),
)
FILTERS = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.builds(lambda fs: {"$and": fs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda fs: {"$or": fs}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=4,
)


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", datetime: "date", dict: "object", list: "array"}[type(value)]


def equal(a: Any, b: Any) -> bool:
    if kind(a) != kind(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(equal(a[k], b[k]) for k in a)
    return bool(a == b)


def get(doc: dict[str, Any], path: str) -> Any:
    node: Any = doc
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def leaf(doc: dict[str, Any], path: str, op: str, arg: Any) -> bool:
    value = get(doc, path)
    candidates = [] if value is MISSING else [value, *(value if isinstance(value, list) else [])]
    if op == "$exists":
        return (value is not MISSING) == arg
    if op == "$ne":
        return not leaf(doc, path, "$eq", arg)
    if op == "$nin":
        return not leaf(doc, path, "$in", arg)
    if op == "$in":
        return any(leaf(doc, path, "$eq", item) for item in arg)
    if arg is None:
        if op in ("$gt", "$lt"):
            return False
        return value is MISSING or any(c is None for c in candidates)
    if op == "$eq":
        return any(equal(c, arg) for c in candidates)
    compare = {
        "$gt": lambda x: x > arg,
        "$gte": lambda x: x >= arg,
        "$lt": lambda x: x < arg,
        "$lte": lambda x: x <= arg,
    }[op]
    return any(kind(c) == kind(arg) and compare(c) for c in candidates)


def matches(doc: dict[str, Any], filter: dict[str, Any]) -> bool:
    for key, value in filter.items():
        if key == "$and" and not all(matches(doc, sub) for sub in value):
            return False
        if key == "$or" and not any(matches(doc, sub) for sub in value):
            return False
        if key.startswith("$"):
            continue
        ops = value if isinstance(value, dict) and value else {"$eq": value}
        if not all(leaf(doc, key, op, arg) for op, arg in ops.items()):
            return False
    return True


RANK = {"null": 1, "number": 2, "string": 3, "object": 4, "array": 5, "bool": 6, "date": 7}


def sort_key(doc: dict[str, Any]) -> tuple[int, Any]:
    value = get(doc, "k")
    if value is MISSING or value is None:
        return (1, 0)
    return (RANK[kind(value)], value)


async def check(docs: list[dict[str, Any]], filters: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = await open_documents(f"sqlite://{folder}", "prop")
        try:
            coll = db.collection("docs")
            for path in ("a", "b.c", "k"):  # the same answers with indexes in play
                await coll.create_index([(path, 1)])
            stored = [{"_id": i, **doc} for i, doc in enumerate(docs)]
            if stored:
                await coll.insert_many(stored)
            for filter in filters:
                found = [doc["_id"] for doc in await coll.find(filter)]
                expected = [doc["_id"] for doc in stored if matches(doc, filter)]
                assert found == expected, filter
            for direction in (1, -1):
                ordered = sorted(stored, key=sort_key, reverse=direction == -1)
                found_order = await coll.find({}, sort=[("k", direction)])
                assert [d["_id"] for d in found_order] == [d["_id"] for d in ordered]
        finally:
            await db.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs=DOCS, filters=st.lists(FILTERS, min_size=1, max_size=6))
def test_sqlite_filters_and_sorts_agree_with_the_reference(
    docs: list[dict[str, Any]], filters: list[dict[str, Any]]
) -> None:
    asyncio.run(check(docs, filters))
