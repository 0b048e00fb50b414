"""Applies port updates (already checked by `language`) to stored documents, like MongoDB.

Works on encoded data (`codec.encode`), so datetimes compare as their stored form and equality
is JSON equality: type-strict for booleans, key-order-sensitive for sub-documents (as in BSON).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from avc_common.documents.errors import DocumentsError, UnsupportedQuery
from avc_common.documents.sqlite.codec import encode


def same(a: Any, b: Any) -> bool:
    """Returns whether two encoded values are equal the way MongoDB compares them."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return False
    return bool(a == b)


def apply_update(
    doc: dict[str, Any], update: Mapping[str, Any], *, inserting: bool
) -> dict[str, Any]:
    """Returns a new document: `doc` with `update` applied (`$setOnInsert` only when inserting)."""
    out = copy.deepcopy(doc)
    steps = [
        (path, op, encode(arg))
        for op, fields in update.items()
        if inserting or op != "$setOnInsert"
        for path, arg in fields.items()
    ]
    # MongoDB applies field updates in path order, which decides where new fields land.
    for path, op, arg in sorted(steps, key=lambda step: step[0]):
        _APPLY[op](out, path, arg)
    return out


def _parent(doc: dict[str, Any], path: str, *, create: bool) -> tuple[dict[str, Any] | None, str]:
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        if part not in node:
            if not create:
                return None, last
            node[part] = {}
        node = node[part]
        if isinstance(node, list):
            raise UnsupportedQuery(f"update paths through arrays are not supported ({path!r})")
        if not isinstance(node, dict):
            if not create:
                return None, last
            raise DocumentsError(f"cannot create field {path!r}: {part!r} is not a sub-document")
    return node, last


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    parent, key = _parent(doc, path, create=True)
    assert parent is not None
    parent[key] = value


def _unset(doc: dict[str, Any], path: str, _: Any) -> None:
    parent, key = _parent(doc, path, create=False)
    if parent is not None:
        parent.pop(key, None)


def _inc(doc: dict[str, Any], path: str, amount: Any) -> None:
    parent, key = _parent(doc, path, create=True)
    assert parent is not None
    current = parent.get(key, 0)
    if isinstance(current, bool) or not isinstance(current, int | float):
        raise DocumentsError(f"cannot apply $inc to the non-numeric field {path!r}")
    parent[key] = current + amount


def _array(doc: dict[str, Any], path: str, op: str) -> list[Any]:
    parent, key = _parent(doc, path, create=True)
    assert parent is not None
    current = parent.setdefault(key, [])
    if not isinstance(current, list):
        raise DocumentsError(f"cannot apply {op} to the non-array field {path!r}")
    return current


def _each(arg: Any) -> list[Any]:
    return list(arg["$each"]) if isinstance(arg, dict) and "$each" in arg else [arg]


def _add_to_set(doc: dict[str, Any], path: str, arg: Any) -> None:
    current = _array(doc, path, "$addToSet")
    for value in _each(arg):
        if not any(same(value, item) for item in current):
            current.append(value)


def _push(doc: dict[str, Any], path: str, arg: Any) -> None:
    _array(doc, path, "$push").extend(_each(arg))


def _pull(doc: dict[str, Any], path: str, arg: Any) -> None:
    parent, key = _parent(doc, path, create=False)
    if parent is None or key not in parent:
        return
    current = parent[key]
    if not isinstance(current, list):
        raise DocumentsError(f"cannot apply $pull to the non-array field {path!r}")
    parent[key] = [item for item in current if not _pulls(item, arg)]


def _pulls(item: Any, arg: Any) -> bool:
    if not isinstance(arg, dict):
        return same(item, arg)
    # A plain sub-document is a condition on the element's fields, as in MongoDB.
    return isinstance(item, dict) and all(_field_is(item, k, v) for k, v in arg.items())


def _field_is(item: dict[str, Any], key: str, value: Any) -> bool:
    if value is None:
        return item.get(key) is None
    if key not in item:
        return False
    found = item[key]
    return same(found, value) or (isinstance(found, list) and any(same(x, value) for x in found))


_APPLY = {
    "$set": _set,
    "$setOnInsert": _set,
    "$unset": _unset,
    "$inc": _inc,
    "$addToSet": _add_to_set,
    "$push": _push,
    "$pull": _pull,
}
