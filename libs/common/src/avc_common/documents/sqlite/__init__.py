"""The SQLite adapter of the documents port (embedded default)."""

from avc_common.documents.sqlite.adapter import (
    SqliteCollection,
    SqliteDatabase,
    open_sqlite_database,
)

__all__ = ["SqliteCollection", "SqliteDatabase", "open_sqlite_database"]
