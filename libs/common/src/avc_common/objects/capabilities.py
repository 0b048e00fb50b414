"""Optional capabilities of an object store, beside the small core of `ObjectStore`
(put/get/stat/list/delete/multipart). Modelled on tusd's `StoreComposer`: a store that can do
more implements an extra interface, and a caller asks for it once, when it is built, instead of
branching on the adapter wherever it stores something.

- `PlacedParts`: multipart uploads whose parts (every one but the last exactly `part_size`
  long) are written where they end up, so completing is a rename, not a copy. The local store.
- `StoredDigests`: the SHA-256 of an object the store saw whole and in order while writing it
  (`put`, and a placed multipart upload hashed in the background), kept with the object so it
  survives a restart. The local store. S3 concatenates parts on its side and never sees them
  in order, so only a read of the object could tell.
"""

from __future__ import annotations

from typing import Protocol, cast


class PlacedParts(Protocol):
    async def create_placed_multipart(
        self, key: str, *, content_type: str = "application/octet-stream", part_size: int
    ) -> str:
        """Returns the id of a new multipart upload of `key` whose parts are `part_size` long
        (the last one at most that): each is written at its final offset. Parts that do not
        fit are still accepted (stored aside and copied at completion)."""
        ...


class StoredDigests(Protocol):
    async def stored_sha256(self, key: str) -> str | None:
        """Returns the hex SHA-256 the store recorded for the object at `key`, or None when
        it did not see the bytes in order (raises ObjectNotFound when there is no object)."""
        ...


def _has_methods(store: object, *names: str) -> bool:
    # Through normal attribute access, so wrappers that delegate (`__getattr__`) keep the
    # capabilities of what they wrap.
    return all(callable(getattr(store, name, None)) for name in names)


def placed_parts(store: object) -> PlacedParts | None:
    """Returns `store` as PlacedParts when it has that capability, else None."""
    return cast(PlacedParts, store) if _has_methods(store, "create_placed_multipart") else None


def stored_digests(store: object) -> StoredDigests | None:
    """Returns `store` as StoredDigests when it has that capability, else None."""
    return cast(StoredDigests, store) if _has_methods(store, "stored_sha256") else None
