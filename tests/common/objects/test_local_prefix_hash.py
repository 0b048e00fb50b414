"""The background SHA-256 of staged uploads: right in every order, never used when it does not
cover exactly the parts complete was asked for, and complete hashes nothing it already has."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from avc_common.objects import LocalObjectStore
from avc_common.objects import local_prefix_hash as prefix_hash
from avc_common.objects.local_prefix_hash import Located, Prefix, PrefixHashes, finish_sha256

PART = 32 * 1024


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def hashes() -> Iterator[PrefixHashes]:
    made = PrefixHashes()
    yield made
    made.close()


def write_parts(directory: Path, bodies: list[bytes]) -> list[Located]:
    """Writes each body as its own file; returns where part i+1 is."""
    located = []
    for number, body in enumerate(bodies, start=1):
        path = directory / f"part{number}"
        path.write_bytes(body)
        located.append(Located(number, f"{number:032x}", str(path), 0, len(body)))
    return located


def wait_hashed(hashes: PrefixHashes, directory: str, count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        prefix = hashes._prefixes.get(directory)
        if prefix is not None and len(prefix.hashed) >= count:
            return
        time.sleep(0.005)
    raise AssertionError(f"the prefix of {directory} did not reach {count} parts")


def no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("complete read a part the prefix already covered")

    monkeypatch.setattr(prefix_hash, "hash_range", refuse)


def test_parts_in_any_order_make_the_whole_hash(
    hashes: PrefixHashes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = [blob(PART, i) for i in range(6)] + [blob(100, 99)]
    parts = write_parts(tmp_path, bodies)
    order = list(range(len(parts)))
    random.Random(5).shuffle(order)
    for index in order:
        hashes.stored("up", parts[index])
    wait_hashed(hashes, "up", len(parts))

    prefix = hashes.take("up")
    assert prefix is not None
    no_reads(monkeypatch)
    assert finish_sha256(prefix, parts) == hashlib.sha256(b"".join(bodies)).hexdigest()


def test_complete_hashes_only_what_the_prefix_lacks(hashes: PrefixHashes, tmp_path: Path) -> None:
    bodies = [blob(PART, 10 + i) for i in range(4)]
    parts = write_parts(tmp_path, bodies)
    for part in (parts[0], parts[1], parts[3]):  # part 3 has not arrived: the prefix stops at 2
        hashes.stored("up", part)
    wait_hashed(hashes, "up", 2)
    prefix = hashes.take("up")
    assert prefix is not None
    assert prefix.hashed == [(1, parts[0].etag), (2, parts[1].etag)]
    assert finish_sha256(prefix, parts) == hashlib.sha256(b"".join(bodies)).hexdigest()


def test_a_part_replaced_after_it_was_hashed_breaks_the_prefix(
    hashes: PrefixHashes, tmp_path: Path
) -> None:
    bodies = [blob(PART, 20), blob(PART, 21)]
    parts = write_parts(tmp_path, bodies)
    for part in parts:
        hashes.stored("up", part)
    wait_hashed(hashes, "up", 2)
    replacement = tmp_path / "again"
    replacement.write_bytes(blob(PART, 22))
    hashes.stored("up", Located(1, "f" * 32, str(replacement), 0, PART))
    assert hashes.take("up") is None


def test_a_prefix_of_other_versions_is_not_used(tmp_path: Path) -> None:
    bodies = [blob(PART, 30), blob(PART, 31)]
    parts = write_parts(tmp_path, bodies)
    stale = Prefix(hashed=[(1, "0" * 32)])
    stale.digest.update(b"bytes of another version")
    assert finish_sha256(stale, parts) == hashlib.sha256(b"".join(bodies)).hexdigest()
    assert finish_sha256(None, parts) == hashlib.sha256(b"".join(bodies)).hexdigest()


def test_a_part_gone_before_it_was_hashed_breaks_the_prefix(
    hashes: PrefixHashes, tmp_path: Path
) -> None:
    parts = write_parts(tmp_path, [blob(PART, 40), blob(PART, 41)])
    Path(parts[0].path).unlink()
    hashes.stored("up", parts[0])
    deadline = time.monotonic() + 10
    while not hashes._prefixes["up"].broken:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert hashes.take("up") is None


def test_memory_is_bounded_by_evicting_the_oldest(tmp_path: Path) -> None:
    hashes = PrefixHashes(max_uploads=2)
    try:
        parts = write_parts(tmp_path, [blob(10, 50)])
        for upload in ("a", "b", "c"):
            hashes.stored(upload, parts[0])
        assert hashes.take("a") is None
        assert hashes.take("b") is not None
        assert hashes.take("c") is not None
    finally:
        hashes.close()


async def test_complete_of_a_chunked_upload_uses_the_background_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalObjectStore(tmp_path / "root")
    await store.start()
    try:
        bodies = [blob(PART, 60 + i) for i in range(5)] + [blob(7, 70)]
        upload_id = await store.create_placed_multipart("v/original", part_size=PART)
        stored = {}
        for number in (2, 6, 1, 4, 3, 5):
            body = bodies[number - 1]
            stored[number] = await store.put_part(
                "v/original", upload_id, number, body, size=len(body)
            )
        directory = str(Path(store.root) / ".avc" / "multipart" / upload_id)
        wait_hashed(store._prefixes, directory, 6)
        no_reads(monkeypatch)
        await store.complete_multipart("v/original", upload_id, [stored[n] for n in range(1, 7)])
        sha256 = await store.stored_sha256("v/original")
    finally:
        await store.close()
    assert sha256 == hashlib.sha256(b"".join(bodies)).hexdigest()
    assert store._prefixes._prefixes == {}


def test_too_many_parts_waiting_gives_the_prefix_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prefix_hash, "_MAX_PENDING", 3)
    hashes = PrefixHashes()
    try:
        parts = write_parts(tmp_path, [blob(10, 80 + i) for i in range(6)])
        for part in parts[2:5]:  # parts 3, 4, 5 wait for 1 and 2: the cap
            hashes.stored("up", part)
        assert not hashes._prefixes["up"].broken
        hashes.stored("up", parts[5])  # a fourth one waiting: given up, nothing kept
        assert hashes._prefixes["up"].broken
        assert hashes._prefixes["up"].pending == {}
        assert hashes.take("up") is None
    finally:
        hashes.close()
