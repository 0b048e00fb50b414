"""The query and update language of the documents port, checked the same way for every adapter.

Supported, with MongoDB's semantics:

- filters: equality (also on dotted paths, and against array fields element-wise), `$eq $ne $gt
  $gte $lt $lte $in $nin $exists`, `$and $or`; `None` equality also matches a missing field;
- updates: `$set $unset $inc $addToSet $push $pull $setOnInsert` on dotted paths, `$each` with
  `$addToSet`/`$push`, `$pull` by equality (a plain sub-document matches elements by its fields);
- sort: `[(path, 1 | -1), ...]`.

Refused with `UnsupportedQuery` by every adapter, so tests on SQLite catch them: every other
operator, digit-only path parts (`a.0`, MongoDB's array positions), range operators against arrays
or sub-documents. Also outside the language, but only detectable with the data: paths through an
array of sub-documents (`items.id` with `items` a list) — SQLite does not look inside the array
for filters and refuses such updates.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from bson import ObjectId

from avc_common.documents.errors import DocumentsError, UnsupportedQuery

COMPARISONS: Final = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
FILTER_OPERATORS: Final = COMPARISONS | {"$in", "$nin", "$exists"}
UPDATE_OPERATORS: Final = frozenset(
    {"$set", "$unset", "$inc", "$addToSet", "$push", "$pull", "$setOnInsert"}
)
# Field names that are safe to inline in SQL JSON paths and mean the same thing in MongoDB.
_PART: Final = re.compile(r"^[^.$\"'\\\[\]\x00-\x1f][^.\"'\\\[\]\x00-\x1f]*$")
_INDEX_NAME: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")


def new_object_id() -> str:
    """Returns a new ObjectId as a 24-hex-digit string (sorts by creation time)."""
    return str(ObjectId())


def index_name(keys: Sequence[tuple[str, int]]) -> str:
    """Returns MongoDB's default index name, e.g. `account_id_1_created_at_-1`."""
    return "_".join(f"{path}_{direction}" for path, direction in keys)


def is_operator_dict(value: Any) -> bool:
    """Returns whether `value` is an operator expression such as `{"$gt": 3}`."""
    return isinstance(value, Mapping) and bool(value) and all(str(k).startswith("$") for k in value)


def check_path(path: str) -> None:
    """Raises UnsupportedQuery unless `path` is a dotted field path the port supports."""
    parts = path.split(".") if isinstance(path, str) else [""]
    # Digit-only parts would be array positions in MongoDB but object keys in SQLite JSON paths.
    if not all(_PART.match(part) and not part.isdigit() for part in parts):
        raise UnsupportedQuery(f"unsupported field path {path!r}")


def check_filter(filter: Mapping[str, Any]) -> None:
    """Raises UnsupportedQuery for anything outside the supported filter language."""
    if not isinstance(filter, Mapping):
        raise UnsupportedQuery(f"a filter must be a mapping, not {type(filter).__name__}")
    for key, value in filter.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list | tuple) or not value:
                raise UnsupportedQuery(f"{key} needs a non-empty list of filters")
            for sub in value:
                check_filter(sub)
        elif key.startswith("$"):
            raise UnsupportedQuery(f"unsupported query operator {key}")
        else:
            check_path(key)
            if is_operator_dict(value):
                for op, arg in value.items():
                    _check_operator(key, op, arg)
            elif isinstance(value, Mapping) and any(str(k).startswith("$") for k in value):
                raise UnsupportedQuery(f"{key}: cannot mix operators and fields in {value!r}")


def _check_operator(path: str, op: str, arg: Any) -> None:
    if op not in FILTER_OPERATORS:
        raise UnsupportedQuery(f"unsupported query operator {op} (on {path!r})")
    if op in ("$in", "$nin"):
        if not isinstance(arg, list | tuple):
            raise UnsupportedQuery(f"{op} needs a list (on {path!r})")
        for item in arg:
            if is_operator_dict(item):
                raise UnsupportedQuery(f"{op} takes plain values (on {path!r})")
    elif op == "$exists":
        if not isinstance(arg, bool):
            raise UnsupportedQuery(f"$exists takes true or false (on {path!r})")
    elif op not in ("$eq", "$ne") and isinstance(arg, Mapping | list | tuple):
        raise UnsupportedQuery(f"{op} against arrays or sub-documents is not supported ({path!r})")
    elif is_operator_dict(arg):
        raise UnsupportedQuery(f"{op} takes a plain value (on {path!r})")


def check_update(update: Mapping[str, Any]) -> None:
    """Raises UnsupportedQuery/DocumentsError unless `update` is a valid operator update."""
    if not isinstance(update, Mapping) or not update:
        raise DocumentsError("an update needs at least one operator such as $set")
    paths: list[str] = []
    for op, fields in update.items():
        if op not in UPDATE_OPERATORS:
            if not str(op).startswith("$"):
                raise DocumentsError("an update must use operators; use replace_one to replace")
            raise UnsupportedQuery(f"unsupported update operator {op}")
        if not isinstance(fields, Mapping) or not fields:
            raise DocumentsError(f"{op} needs a non-empty mapping of fields")
        for path, arg in fields.items():
            check_path(path)
            paths.append(path)
            _check_update_argument(op, path, arg)
    # MongoDB refuses two operators touching the same path or a path and its parent.
    ordered = sorted(paths)
    for first, second in itertools.pairwise(ordered):
        if second == first or second.startswith(first + "."):
            raise DocumentsError(f"update paths {first!r} and {second!r} conflict")


def _check_update_argument(op: str, path: str, arg: Any) -> None:
    if op == "$inc" and (isinstance(arg, bool) or not isinstance(arg, int | float)):
        raise DocumentsError(f"$inc needs a number (on {path!r})")
    if op in ("$addToSet", "$push") and isinstance(arg, Mapping) and _has_operator_key(arg):
        if set(arg) != {"$each"}:
            raise UnsupportedQuery(f"{op} supports only $each (on {path!r})")
        if not isinstance(arg["$each"], list | tuple):
            raise DocumentsError(f"$each needs a list (on {path!r})")
    if op == "$pull" and isinstance(arg, Mapping):
        if _has_operator_key(arg):
            raise UnsupportedQuery(f"$pull supports equality only (on {path!r})")
        for key, value in arg.items():
            if "." in key or isinstance(value, Mapping | list | tuple):
                raise UnsupportedQuery(
                    f"$pull sub-document conditions take plain fields ({path!r})"
                )
    elif op not in ("$addToSet", "$push", "$unset") and _has_operator_key(arg):
        raise UnsupportedQuery(f"{op} values cannot hold operators (on {path!r})")


def _has_operator_key(value: Any) -> bool:
    return isinstance(value, Mapping) and any(str(k).startswith("$") for k in value)


def check_replacement(doc: Mapping[str, Any]) -> None:
    """Raises DocumentsError when a replacement document holds update operators."""
    if not isinstance(doc, Mapping) or any(str(k).startswith("$") for k in doc):
        raise DocumentsError("a replacement is a plain document; use update_one for operators")


def check_replace_upsert(filter: Mapping[str, Any], doc: Mapping[str, Any], upsert: bool) -> None:
    """Raises DocumentsError for an upserting replace that has no `_id` to create with.

    MongoDB would mint an ObjectId there and SQLite a string, so both adapters refuse instead.
    """
    if upsert and "_id" not in doc and "_id" not in upsert_seed(filter):
        raise DocumentsError("replace_one(upsert=True) needs an _id in the filter or the doc")


def check_sort(sort: Sequence[tuple[str, int]] | None) -> None:
    """Raises UnsupportedQuery unless `sort` is a list of (path, 1 | -1)."""
    for item in sort or ():
        path, direction = item
        check_path(path)
        if direction not in (1, -1) or isinstance(direction, bool):
            raise UnsupportedQuery(f"sort direction must be 1 or -1, not {direction!r}")


def check_page(skip: int, limit: int) -> None:
    """Raises ValueError for a negative skip or limit."""
    if skip < 0 or limit < 0:
        raise ValueError("skip and limit must not be negative")


def check_index(
    keys: Sequence[tuple[str, int]],
    name: str,
    expire_after_seconds: int | None,
    partial_filter: Mapping[str, Any] | None,
) -> None:
    """Raises UnsupportedQuery/DocumentsError for an index the port does not support."""
    if not keys:
        raise DocumentsError("an index needs at least one key")
    check_sort(keys)
    if not _INDEX_NAME.match(name):
        raise DocumentsError(f"index names use letters, digits, '_', '.' and '-': {name!r}")
    if expire_after_seconds is not None and (len(keys) != 1 or expire_after_seconds < 0):
        raise DocumentsError("a TTL index has exactly one key and a non-negative expiry")
    if partial_filter is not None:
        check_filter(partial_filter)


def upsert_seed(filter: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the document an upsert starts from: the filter's equality fields, like MongoDB."""
    seed: dict[str, Any] = {}

    def visit(part: Mapping[str, Any]) -> None:
        for key, value in part.items():
            if key == "$and":
                for sub in value:
                    visit(sub)
            elif key.startswith("$"):
                continue
            elif is_operator_dict(value):
                if "$eq" in value:
                    _put(seed, key, value["$eq"])
            else:
                _put(seed, key, value)

    visit(filter)
    return seed


def _put(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        child = doc.setdefault(part, {})
        if not isinstance(child, dict):
            raise DocumentsError(f"upsert filter paths conflict at {path!r}")
        doc = child
    doc[last] = copy.deepcopy(value)
