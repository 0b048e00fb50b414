"""The documents port: a small MongoDB-shaped API over SQLite (embedded) or MongoDB.

`open_documents(url, name)` picks the adapter from the URL once; services only see
`DocumentDatabase` and `Collection`. The supported language is described in `language`.
"""

from __future__ import annotations

import re
from pathlib import Path

from avc_common.documents.base import Collection, DocumentDatabase, UpdateResult
from avc_common.documents.errors import DocumentsError, DuplicateKey, UnsupportedQuery

__all__ = [
    "Collection",
    "DocumentDatabase",
    "DocumentsError",
    "DuplicateKey",
    "UnsupportedQuery",
    "UpdateResult",
    "open_documents",
]

_NAME = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


async def open_documents(
    url: str, name: str, *, ttl_sweep_seconds: float | None = None
) -> DocumentDatabase:
    """Returns service `name`'s database at `url`: `sqlite:///folder` or `mongodb://…`.

    SQLite stores `<folder>/<name>.db` (`sqlite:///abs/folder` or `sqlite://relative/folder`);
    MongoDB uses the database `avc_<name>`. `ttl_sweep_seconds` only applies to SQLite.
    """
    if not _NAME.match(name):
        raise ValueError(f"database names are letters, digits, '_' and '-': {name!r}")
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    # Imported here so a process only loads the driver it uses.
    if scheme == "sqlite" and rest:
        from avc_common.documents.sqlite import open_sqlite_database

        return await open_sqlite_database(Path(rest), name, ttl_sweep_seconds=ttl_sweep_seconds)
    if scheme in ("mongodb", "mongodb+srv") and rest:
        from avc_common.documents.mongo import open_mongo_database

        return await open_mongo_database(url, name)
    raise ValueError(
        f"unsupported documents URL {url.split('@')[-1]!r}: "
        "use sqlite:///path/to/folder, mongodb://… or mongodb+srv://…"
    )
