"""What the upload service relies on from the local object store: the SHA-256 of an object
comes out of the write that stores it (put, and the concatenation of complete_multipart), and
survives a restart in the sidecar, so `stored_sha256` after a crash still knows it."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from tests.upload.conftest import Harness

from avc_common.objects import LocalObjectStore
from avc_upload.completion import Completion

MIB = 1024 * 1024
CHUNK = 5 * MIB


async def test_put_and_complete_multipart_report_the_sha256(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "objects")
    await store.start()
    data = random.Random(1).randbytes(3 * MIB + 17)

    async def pieces():  # type: ignore[no-untyped-def]
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]

    await store.put("a/put", pieces())
    assert await store.stored_sha256("a/put") == hashlib.sha256(data).hexdigest()

    upload = await store.create_multipart("a/multi")
    parts = [
        await store.put_part(
            "a/multi",
            upload,
            n + 1,
            data[n * MIB : (n + 1) * MIB],
            size=len(data[n * MIB : (n + 1) * MIB]),
        )
        for n in reversed(range(4))
    ]
    await store.complete_multipart("a/multi", upload, parts)
    assert await store.stored_sha256("a/multi") == hashlib.sha256(data).hexdigest()
    assert await store.read_bytes("a/multi") == data

    reopened = LocalObjectStore(tmp_path / "objects")
    assert await reopened.stored_sha256("a/multi") == hashlib.sha256(data).hexdigest()
    assert await reopened.stored_sha256("a/put") == hashlib.sha256(data).hexdigest()
    # A file without our sidecar has no known SHA-256 (the service then reads it).
    (Path(reopened.root) / "manual").write_bytes(b"by hand")
    assert await reopened.stored_sha256("manual") is None


async def test_complete_on_local_storage_takes_the_stored_sha256(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The local store has PlacedParts and StoredDigests: chunks land in place and complete
    takes the SHA-256 kept with the object, never reading the object back."""
    context = harness.app.state.upload_service.context
    assert context.placed is not None
    assert context.digests is not None

    async def no_read_back(self: Completion, key: str) -> str:
        raise AssertionError(f"{key} was read back to hash it")

    monkeypatch.setattr(Completion, "_hash_object", no_read_back)
    data = random.Random(3).randbytes(2 * CHUNK + 99)
    upload_id = (await harness.init(len(data), filename="placed.bin"))["upload_id"]
    await harness.send_chunks(upload_id, data, CHUNK, [2, 0, 1])
    response = await harness.complete(upload_id)
    assert response.status_code == 200, response.text
    [call] = harness.media.calls
    assert call["sha256"] == hashlib.sha256(data).hexdigest()
