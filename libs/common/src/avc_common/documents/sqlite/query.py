"""Compiles port filters and sorts (already checked by `language`) to SQL over `json_extract`.

A field `a.b` is read as `json_extract(doc, '$."a"."b"')` (X) with its JSON type
`json_type(doc, ...)` (T); indexes are declared on the same X expressions so SQLite uses them.
MongoDB's array rule (a condition matches an array field when any element matches) is an extra
`OR` branch over `json_each`, guarded by the range `X >= '[' AND X < '\\'` (arrays come back as
JSON text starting with `[`), which keeps the whole `OR` indexable ("MULTI-INDEX OR").
"""

# SQL text is built only from checked JSON paths; values are bound (or inlined as
# quoted literals for partial indexes, which cannot take parameters).
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from avc_common.documents.language import is_operator_dict
from avc_common.documents.sqlite.codec import MARK, dumps, encode, id_key

# Type ranks in MongoDB's cross-type sort order (null < numbers < strings < objects < arrays
# < booleans < dates), so a mixed field still sorts the way MongoDB sorts it.
_RANK: Final = (
    "CASE {t} WHEN 'integer' THEN 2 WHEN 'real' THEN 2 WHEN 'object' THEN 4 WHEN 'array' THEN 5"
    " WHEN 'true' THEN 6 WHEN 'false' THEN 6"
    " WHEN 'text' THEN CASE WHEN {x} >= char(1114111) THEN 7 ELSE 3 END ELSE 1 END"
)
_SQL_OPS: Final = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
_POSITIVE: Final = {"$ne": "$eq", "$nin": "$in"}

Cond = Callable[[str, str], str]


def json_path(path: str) -> str:
    """Returns the SQL literal of the JSON path for a checked dotted field path."""
    return "'$" + "".join(f'."{part}"' for part in path.split(".")) + "'"


def field(path: str) -> str:
    """Returns the SQL expression of a field's value (the expression indexes are built on)."""
    return f"json_extract(doc, {json_path(path)})"


def compile_filter(filter: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """Returns (SQL condition, parameters) matching exactly the documents MongoDB would."""
    compiler = _Compiler(inline=False, arrays=True)
    return compiler.filter(filter), compiler.params


def compile_index_filter(filter: Mapping[str, Any]) -> str:
    """Returns a parameter-free condition for a partial index (no subqueries allowed there)."""
    return _Compiler(inline=True, arrays=False).filter(filter)


def compile_sort(sort: Sequence[tuple[str, int]] | None) -> str:
    """Returns an ORDER BY clause; ties keep insertion order (rowid), so the sort is stable."""
    terms = []
    for path, direction in sort or ():
        word = "ASC" if direction == 1 else "DESC"
        x, t = field(path), f"json_type(doc, {json_path(path)})"
        terms += [f"{_RANK.format(t=t, x=x)} {word}", f"{x} {word}"]
    return "ORDER BY " + ", ".join([*terms, "rowid"])


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


class _Compiler:
    def __init__(self, *, inline: bool, arrays: bool) -> None:
        self.inline = inline
        self.arrays = arrays
        self.params: list[Any] = []

    def bind(self, value: Any) -> str:
        if self.inline:
            return _literal(value)
        self.params.append(value)
        return "?"

    def filter(self, filter: Mapping[str, Any]) -> str:
        parts = []
        for key, value in filter.items():
            if key in ("$and", "$or"):
                glue = " AND " if key == "$and" else " OR "
                parts.append("(" + glue.join(f"({self.filter(sub)})" for sub in value) + ")")
            elif is_operator_dict(value):
                parts.extend(self.operator(key, op, arg) for op, arg in value.items())
            else:
                parts.append(self.operator(key, "$eq", value))
        return " AND ".join(parts) if parts else "1"

    def operator(self, path: str, op: str, arg: Any) -> str:
        if op in ("$ne", "$nin"):
            # NOT over a condition that may be NULL would drop rows; coalesce makes it total.
            return f"NOT coalesce({self.operator(path, _POSITIVE[op], arg)}, 0)"
        if path == "_id" and op in ("$eq", "$in") and not self.inline:
            values = [encode(v) for v in (arg if op == "$in" else [arg])]
            if not any(isinstance(v, dict | list) for v in values):
                # `_id` is never an array, so the primary key answers directly.
                return f"id IN ({', '.join(self.bind(id_key(v)) for v in values)})"
        if op == "$exists":
            return f"json_type(doc, {json_path(path)}) IS {'NOT ' if arg else ''}NULL"
        if op == "$eq":
            value = encode(arg)
            return self.match(path, lambda x, t: self.equals(x, t, value))
        if op == "$in":
            values = [encode(v) for v in arg]
            if not values:
                return "0"
            return self.match(
                path, lambda x, t: "(" + " OR ".join(self.equals(x, t, v) for v in values) + ")"
            )
        value = encode(arg)
        if value is None:
            # MongoDB: $gte/$lte null mean "is null"; $gt/$lt null match nothing.
            return self.operator(path, "$eq", None) if op in ("$gte", "$lte") else "0"
        return self.match(path, lambda x, t: self.compare(x, t, _SQL_OPS[op], value))

    def match(self, path: str, cond: Cond) -> str:
        p = json_path(path)
        x, t = f"json_extract(doc, {p})", f"json_type(doc, {p})"
        direct = cond(x, t)
        if not self.arrays:
            return direct
        element = cond("e.value", "e.type")
        return (
            f"({direct} OR ({x} >= '[' AND {x} < '\\' AND {t} = 'array' AND EXISTS "
            f"(SELECT 1 FROM json_each(doc, {p}) AS e WHERE {element})))"
        )

    def equals(self, x: str, t: str, value: Any) -> str:
        if value is None:
            return f"({t} IS NULL OR {t} = 'null')"
        if isinstance(value, bool):
            return f"{t} = '{'true' if value else 'false'}'"
        if isinstance(value, int | float):
            return f"({x} = {self.bind(value)} AND {t} IN ('integer', 'real'))"
        if isinstance(value, str):
            return f"({x} = {self.bind(value)} AND {t} = 'text')"
        kind = "object" if isinstance(value, dict) else "array"
        return f"({t} = '{kind}' AND {x} = json({self.bind(dumps(value))}))"

    def compare(self, x: str, t: str, sql_op: str, value: Any) -> str:
        if isinstance(value, bool):
            return f"({t} IN ('true', 'false') AND {x} {sql_op} {self.bind(int(value))})"
        if isinstance(value, int | float):
            return f"({t} IN ('integer', 'real') AND {x} {sql_op} {self.bind(value)})"
        # Strings and datetimes are both text; the marked block keeps them apart.
        block = ">=" if value.startswith(MARK) else "<"
        cond = f"{x} {sql_op} {self.bind(value)} AND {x} {block} {self.bind(MARK)}"
        return f"({t} = 'text' AND {cond})"
