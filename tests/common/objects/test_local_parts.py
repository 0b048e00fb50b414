"""The local adapter's hinted multipart uploads: parts written in place, complete as a rename,
and every way that can go wrong (re-sends, failed writes, crashed writers, racing completes)."""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from avc_common.objects import (
    InvalidPart,
    LocalObjectStore,
    MultipartNotFound,
    SizeMismatch,
)
from avc_common.objects.local_parts import DATA, claim_name

PART = 64 * 1024


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


async def slowly(data: bytes, piece: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), piece):
        await anyio.sleep(0.001)
        yield data[start : start + piece]


async def failing(data: bytes) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    raise RuntimeError("client went away")


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalObjectStore]:
    store = LocalObjectStore(tmp_path / "root")
    await store.start()
    yield store
    await store.close()


def staging(store: LocalObjectStore, upload_id: str) -> Path:
    return Path(store.root) / ".avc" / "multipart" / upload_id


async def test_parts_land_in_place_and_complete_is_a_rename(local: LocalObjectStore) -> None:
    bodies = {1: blob(PART, 1), 2: blob(PART, 2), 3: blob(1000, 3)}
    upload_id = await local.create_placed_multipart("v/original", part_size=PART)
    parts = {}
    for number in (3, 1, 2):
        parts[number] = await local.put_part(
            "v/original", upload_id, number, bodies[number], size=len(bodies[number])
        )
    staged = staging(local, upload_id)
    names = sorted(p.name for p in staged.iterdir())
    assert names == sorted(
        [DATA, "upload.json"]
        + [claim_name(n) for n in (1, 2, 3)]
        + [f"{n:05d}.{parts[n].etag}.{parts[n].size}.slot" for n in (1, 2, 3)]
    )
    data_inode = (staged / DATA).stat().st_ino

    info = await local.complete_multipart("v/original", upload_id, [parts[1], parts[2], parts[3]])
    whole = bodies[1] + bodies[2] + bodies[3]
    stored = Path(local.root) / "v" / "original"
    assert stored.read_bytes() == whole
    assert stored.stat().st_ino == data_inode  # renamed, not copied
    assert info.size == len(whole)
    assert await local.stored_sha256("v/original") == hashlib.sha256(whole).hexdigest()
    assert not staged.exists()


async def test_a_resent_part_never_damages_the_stored_one(local: LocalObjectStore) -> None:
    first, second = blob(PART, 10), blob(PART, 11)
    last = blob(10, 12)
    upload_id = await local.create_placed_multipart("v/resend", part_size=PART)
    kept = await local.put_part("v/resend", upload_id, 1, first, size=PART)
    tail = await local.put_part("v/resend", upload_id, 2, last, size=10)

    # A re-send that fails midway (short body, client gone) leaves part 1 as it was.
    with pytest.raises(SizeMismatch):
        await local.put_part("v/resend", upload_id, 1, second[:100], size=PART)
    with pytest.raises(RuntimeError):
        await local.put_part("v/resend", upload_id, 1, failing(second), size=PART)
    assert await local.list_parts("v/resend", upload_id) == [kept, tail]
    await local.complete_multipart("v/resend", upload_id, [kept, tail])
    assert await local.read_bytes("v/resend") == first + last

    # A successful re-send replaces it: its own file, then complete copies.
    upload_id = await local.create_placed_multipart("v/resend2", part_size=PART)
    await local.put_part("v/resend2", upload_id, 1, first, size=PART)
    tail = await local.put_part("v/resend2", upload_id, 2, last, size=10)
    replaced = await local.put_part("v/resend2", upload_id, 1, second, size=PART)
    assert await local.list_parts("v/resend2", upload_id) == [replaced, tail]
    assert not list(staging(local, upload_id).glob("00001.*.slot"))
    with pytest.raises(InvalidPart):
        await local.complete_multipart("v/resend2", upload_id, [kept, tail])
    info = await local.complete_multipart("v/resend2", upload_id, [replaced, tail])
    assert await local.read_bytes("v/resend2") == second + last
    assert info.size == len(await local.read_bytes("v/resend2"))
    assert await local.stored_sha256("v/resend2") == hashlib.sha256(second + last).hexdigest()


async def test_a_failed_first_write_frees_the_place(local: LocalObjectStore) -> None:
    body = blob(PART, 20)
    upload_id = await local.create_placed_multipart("v/retry", part_size=PART)
    with pytest.raises(RuntimeError):
        await local.put_part("v/retry", upload_id, 1, failing(body), size=PART)
    assert not (staging(local, upload_id) / claim_name(1)).exists()
    assert await local.list_parts("v/retry", upload_id) == []
    part = await local.put_part("v/retry", upload_id, 1, body, size=PART)
    assert list(staging(local, upload_id).glob("00001.*.slot"))
    await local.complete_multipart("v/retry", upload_id, [part])
    assert await local.read_bytes("v/retry") == body


async def test_a_writer_that_crashed_in_place_leaves_a_usable_upload(
    local: LocalObjectStore,
) -> None:
    body, tail = blob(PART, 30), blob(5, 31)
    upload_id = await local.create_placed_multipart("v/crash", part_size=PART)
    staged = staging(local, upload_id)
    # What a process killed while writing part 1 in place leaves: its claim and half the bytes.
    (staged / claim_name(1)).touch()
    with (staged / DATA).open("r+b") as f:
        f.write(b"\xff" * (PART // 2))
    assert await local.list_parts("v/crash", upload_id) == []
    first = await local.put_part("v/crash", upload_id, 1, body, size=PART)
    assert (staged / f"00001.{first.etag}.part").exists()
    second = await local.put_part("v/crash", upload_id, 2, tail, size=5)
    info = await local.complete_multipart("v/crash", upload_id, [first, second])
    assert await local.read_bytes("v/crash") == body + tail
    assert info.size == len(await local.read_bytes("v/crash"))
    assert await local.stored_sha256("v/crash") == hashlib.sha256(body + tail).hexdigest()


async def test_parts_that_do_not_fit_the_hint_are_copied(local: LocalObjectStore) -> None:
    big, small, other = blob(PART + 1, 40), blob(100, 41), blob(PART, 42)
    upload_id = await local.create_placed_multipart("v/odd", part_size=PART)
    too_big = await local.put_part("v/odd", upload_id, 1, big, size=len(big))
    assert (staging(local, upload_id) / f"00001.{too_big.etag}.part").exists()
    short = await local.put_part("v/odd", upload_id, 2, small, size=100)
    full = await local.put_part("v/odd", upload_id, 3, other, size=PART)
    # A short part before the last, and a part bigger than the hint: not a prefix of `data`.
    info = await local.complete_multipart("v/odd", upload_id, [too_big, short, full])
    assert await local.read_bytes("v/odd") == big + small + other
    assert info.size == len(await local.read_bytes("v/odd"))
    assert await local.stored_sha256("v/odd") == hashlib.sha256(big + small + other).hexdigest()

    # Parts with a gap in their numbers: copied too.
    upload_id = await local.create_placed_multipart("v/gap", part_size=PART)
    one = await local.put_part("v/gap", upload_id, 1, other, size=PART)
    three = await local.put_part("v/gap", upload_id, 3, small, size=100)
    await local.complete_multipart("v/gap", upload_id, [one, three])
    assert await local.read_bytes("v/gap") == other + small


async def test_places_beyond_the_last_listed_part_are_cut_off(local: LocalObjectStore) -> None:
    one, two = blob(PART, 50), blob(PART, 51)
    upload_id = await local.create_placed_multipart("v/cut", part_size=PART)
    first = await local.put_part("v/cut", upload_id, 1, one, size=PART)
    await local.put_part("v/cut", upload_id, 2, two, size=PART)
    info = await local.complete_multipart("v/cut", upload_id, [first])
    assert info.size == PART
    assert await local.read_bytes("v/cut") == one


async def test_complete_waits_for_a_part_being_written_in_place(local: LocalObjectStore) -> None:
    """No writer is ever left holding the published file: complete waits for it to finish."""
    one, two = blob(PART, 60), blob(PART, 61)
    upload_id = await local.create_placed_multipart("v/race", part_size=PART)
    first = await local.put_part("v/race", upload_id, 1, one, size=PART)
    events: list[str] = []

    async def slow_writer() -> None:
        await local.put_part("v/race", upload_id, 2, slowly(two), size=PART)
        events.append("written")

    async with anyio.create_task_group() as tg:
        tg.start_soon(slow_writer)
        await anyio.sleep(0.02)  # the writer holds its place (and the shared lock) by now
        await local.complete_multipart("v/race", upload_id, [first])
        events.append("completed")
    assert events == ["written", "completed"]
    assert await local.read_bytes("v/race") == one


async def test_writes_after_complete_are_refused(local: LocalObjectStore) -> None:
    body = blob(PART, 70)
    upload_id = await local.create_placed_multipart("v/late", part_size=PART)
    part = await local.put_part("v/late", upload_id, 1, body, size=PART)
    await local.complete_multipart("v/late", upload_id, [part])
    with pytest.raises(MultipartNotFound):
        await local.put_part("v/late", upload_id, 2, b"late", size=4)
    assert await local.read_bytes("v/late") == body


async def test_complete_interrupted_after_the_rename_is_finished_by_a_retry(
    local: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between publishing `data` and dropping the staging dir: the retry reports the
    upload as completed (the caller then finds the object) and clears the leftovers."""
    body = blob(PART, 80)
    upload_id = await local.create_placed_multipart("v/crashed", part_size=PART)
    part = await local.put_part("v/crashed", upload_id, 1, body, size=PART)
    monkeypatch.setattr(local, "_sync_drop_upload", lambda directory: None)
    info = await local.complete_multipart("v/crashed", upload_id, [part])
    monkeypatch.undo()
    assert staging(local, upload_id).exists()

    with pytest.raises(MultipartNotFound):
        await local.complete_multipart("v/crashed", upload_id, [part])
    assert not staging(local, upload_id).exists()
    assert await local.stat("v/crashed") == info
    assert await local.read_bytes("v/crashed") == body


async def test_concurrent_first_writes_of_one_part_never_mix(local: LocalObjectStore) -> None:
    bodies = [blob(PART, 90 + i) for i in range(4)]
    upload_id = await local.create_placed_multipart("v/same", part_size=PART)
    sent: dict[str, bytes] = {}

    async def send(body: bytes) -> None:
        part = await local.put_part("v/same", upload_id, 1, slowly(body, 8192), size=PART)
        sent[part.etag] = body

    async with anyio.create_task_group() as tg:
        for body in bodies:
            tg.start_soon(send, body)
    assert len(sent) == 4  # every write got its own version tag
    (current,) = await local.list_parts("v/same", upload_id)
    await local.complete_multipart("v/same", upload_id, [current])
    assert await local.read_bytes("v/same") == sent[current.etag]


async def test_part_size_hint_is_checked(local: LocalObjectStore) -> None:
    for bad in (0, -1, 6 * 1024**3):
        with pytest.raises(ValueError):
            await local.create_placed_multipart("v/bad", part_size=bad)
    assert os.listdir(Path(local.root) / ".avc" / "multipart") == []
