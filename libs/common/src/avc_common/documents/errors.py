"""Errors of the documents port; adapters translate their driver's errors into these."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DocumentsError(Exception):
    """Base of every error the documents port raises on its own account."""


class UnsupportedQuery(DocumentsError):
    """A filter, update, sort or index uses something outside the port's MongoDB subset."""


class DuplicateKey(DocumentsError):
    """A write would give two documents the same `_id` or the same key of a unique index."""

    def __init__(
        self, message: str, *, key: Mapping[str, Any] | None = None, index: str | None = None
    ) -> None:
        super().__init__(message)
        self.key: dict[str, Any] = dict(key or {})
        self.index = index
