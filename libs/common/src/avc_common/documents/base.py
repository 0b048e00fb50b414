"""The documents port: the small subset of MongoDB's collection API the services use.

Both adapters accept exactly the language checked in `language.py`; anything else raises
`UnsupportedQuery` in both, so code that passes its tests on SQLite also runs on MongoDB.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Filter = Mapping[str, Any]
Update = Mapping[str, Any]
Sort = Sequence[tuple[str, int]]
ReturnDocument = Literal["before", "after"]


@dataclass(frozen=True)
class UpdateResult:
    matched_count: int
    modified_count: int
    upserted_id: Any = None


class Collection(ABC):
    """One collection of documents (plain dicts with an `_id`)."""

    name: str

    @abstractmethod
    async def create_index(
        self,
        keys: Sequence[tuple[str, int]],
        *,
        unique: bool = False,
        expire_after_seconds: int | None = None,
        name: str | None = None,
        partial_filter: Mapping[str, Any] | None = None,
    ) -> str:
        """Returns the index name; creating the same index again is a no-op."""

    @abstractmethod
    async def insert_one(self, doc: Mapping[str, Any]) -> Any:
        """Returns the `_id` (a new ObjectId-like string when `doc` has none)."""

    @abstractmethod
    async def insert_many(self, docs: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Returns the `_id`s; stops at the first duplicate like MongoDB's ordered insert."""

    @abstractmethod
    async def find_one(self, filter: Filter, *, sort: Sort | None = None) -> dict[str, Any] | None:
        """Returns the first matching document, or None."""

    @abstractmethod
    async def find(
        self, filter: Filter, *, sort: Sort | None = None, skip: int = 0, limit: int = 0
    ) -> list[dict[str, Any]]:
        """Returns the matching documents (`limit=0` means no limit)."""

    @abstractmethod
    async def count(self, filter: Filter | None = None) -> int:
        """Returns how many documents match."""

    @abstractmethod
    async def update_one(
        self, filter: Filter, update: Update, *, upsert: bool = False
    ) -> UpdateResult:
        """Returns the counts after atomically applying `update` to the first match."""

    @abstractmethod
    async def update_many(self, filter: Filter, update: Update) -> UpdateResult:
        """Returns the counts after applying `update` to every match."""

    @abstractmethod
    async def find_one_and_update(
        self,
        filter: Filter,
        update: Update,
        *,
        upsert: bool = False,
        sort: Sort | None = None,
        return_document: ReturnDocument = "after",
    ) -> dict[str, Any] | None:
        """Returns the document before or after an atomic update (None if nothing matched)."""

    @abstractmethod
    async def replace_one(
        self, filter: Filter, doc: Mapping[str, Any], *, upsert: bool = False
    ) -> UpdateResult:
        """Returns the counts after replacing the first match (keeping its `_id`)."""

    @abstractmethod
    async def delete_one(self, filter: Filter) -> int:
        """Returns how many documents were deleted (0 or 1)."""

    @abstractmethod
    async def delete_many(self, filter: Filter) -> int:
        """Returns how many documents were deleted."""


class DocumentDatabase(ABC):
    """One service's database: `avc_<service>` on MongoDB, `<folder>/<service>.db` on SQLite."""

    @abstractmethod
    def collection(self, name: str) -> Collection:
        """Returns the collection `name` (created on first use)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raises when the database cannot be reached."""

    @abstractmethod
    async def close(self) -> None:
        """Releases connections and background tasks."""

    @abstractmethod
    async def drop(self) -> None:
        """Deletes every collection and index (tests use it to clean up)."""
