"""The objects port contract: every test runs against every adapter (local, s3-moto, minio)."""

from __future__ import annotations

import hashlib
import random
import re
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from avc_common.objects import (
    CHUNK_SIZE,
    InvalidKey,
    InvalidPart,
    MultipartNotFound,
    ObjectNotFound,
    ObjectsError,
    ObjectStore,
    PartInfo,
    RangeNotSatisfiable,
    SizeMismatch,
)
from avc_common.objects.capabilities import placed_parts
from avc_common.objects.s3 import S3ObjectStore

if TYPE_CHECKING:
    from conftest import Harness

MIB = 1024 * 1024
PART = 5 * MIB  # S3's minimum for every part but the last


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        await anyio.lowlevel.checkpoint()
        yield data[start : start + chunk]


async def read_all(store: ObjectStore, key: str, **kwargs: int | None) -> bytes:
    async with await store.get(key, **kwargs) as reader:
        return b"".join([chunk async for chunk in reader])


# -- put / get --------------------------------------------------------------------------------


async def test_put_bytes_then_read_back(store: ObjectStore) -> None:
    data = b"hello, objects"
    before = datetime.now(UTC) - timedelta(seconds=5)
    info = await store.put("sources/vid_abc/original", data, content_type="text/plain")

    assert info.key == "sources/vid_abc/original"
    assert info.size == len(data)
    assert info.etag == md5(data)
    assert info.content_type == "text/plain"
    assert info.last_modified.tzinfo is not None
    assert info.last_modified.utcoffset() == timedelta(0)
    assert before <= info.last_modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert await store.read_bytes("sources/vid_abc/original") == data
    assert await store.stat("sources/vid_abc/original") == info


@pytest.mark.parametrize("declared", [True, False], ids=["known-size", "unknown-size"])
async def test_put_async_iterable(store: ObjectStore, declared: bool) -> None:
    data = blob(300_000)
    info = await store.put("a/stream.bin", stream(data), size=len(data) if declared else None)
    assert (info.size, info.etag) == (len(data), md5(data))
    assert await read_all(store, "a/stream.bin") == data


async def test_empty_object(store: ObjectStore) -> None:
    info = await store.put("empty", b"")
    assert (info.size, info.etag) == (0, md5(b""))
    async with await store.get("empty") as reader:
        assert (reader.start, reader.length, reader.info.size) == (0, 0, 0)
        assert [chunk async for chunk in reader] == []
    assert (await store.put("empty2", stream(b""), size=0)).size == 0


@pytest.mark.parametrize("source", ["stream", "sized-stream", "bytes"])
async def test_large_object_streams_in_bounded_chunks(harness: Harness, source: str) -> None:
    store = harness.store
    data = blob(12 * MIB, seed=1)
    payload = data if source == "bytes" else stream(data, 256 * 1024)
    size = None if source == "stream" else len(data)

    tracemalloc.start()
    try:
        info = await store.put("big/original", payload, size=size, content_type="video/mp4")
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        digest = hashlib.md5()
        sizes = []
        async with await store.get("big/original") as reader:
            assert reader.length == len(data)
            async for chunk in reader:
                sizes.append(len(chunk))
                digest.update(chunk)
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert info.size == len(data)
    assert digest.hexdigest() == md5(data)
    assert max(sizes) <= CHUNK_SIZE
    assert sum(sizes) == len(data)
    assert get_peak < 6 * MIB, f"reading 12 MiB peaked at {get_peak / MIB:.1f} MiB"
    if source != "bytes" and not harness.is_s3:  # S3 holds a part (8 MiB) in memory by design
        assert put_peak < 4 * MIB, f"writing 12 MiB peaked at {put_peak / MIB:.1f} MiB"


async def test_content_type_kept_everywhere(store: ObjectStore) -> None:
    await store.put("seg/one.ts", b"ts", content_type="video/mp2t")
    await store.put("seg/two.bin", b"bin")

    assert (await store.stat("seg/one.ts")).content_type == "video/mp2t"
    assert (await store.stat("seg/two.bin")).content_type == "application/octet-stream"
    async with await store.get("seg/one.ts", offset=1) as reader:
        assert reader.info.content_type == "video/mp2t"
    listed = {i.key: i.content_type for i in await store.list("seg")}
    assert listed == {"seg/one.ts": "video/mp2t", "seg/two.bin": "application/octet-stream"}


async def test_stat_exists_and_not_found(store: ObjectStore) -> None:
    assert not await store.exists("nope/missing")
    with pytest.raises(ObjectNotFound):
        await store.stat("nope/missing")
    with pytest.raises(ObjectNotFound):
        await store.get("nope/missing")
    with pytest.raises(ObjectNotFound):
        await store.read_bytes("nope/missing")

    await store.put("nope/there", b"x")
    assert await store.exists("nope/there")
    # A prefix of existing objects is not an object.
    assert not await store.exists("nope")
    with pytest.raises(ObjectNotFound):
        await store.stat("nope")


# -- ranges -----------------------------------------------------------------------------------

RANGE_DATA = blob(1000, seed=2)


@pytest.mark.parametrize(
    ("offset", "length", "start", "end"),
    [
        (0, None, 0, 1000),  # whole object
        (0, 10, 0, 10),  # first bytes
        (100, 50, 100, 150),  # middle
        (990, None, 990, 1000),  # from an offset to the end
        (990, 10, 990, 1000),  # exactly to the end
        (995, 100, 995, 1000),  # past the end: clamped like HTTP
        (999, 1, 999, 1000),  # last byte
    ],
    ids=["whole", "start", "middle", "suffix", "exact-end", "clamped", "last-byte"],
)
async def test_range_reads(
    store: ObjectStore, offset: int, length: int | None, start: int, end: int
) -> None:
    await store.put("hls/seg_00001.ts", RANGE_DATA, content_type="video/mp2t")
    async with await store.get("hls/seg_00001.ts", offset=offset, length=length) as reader:
        assert (reader.start, reader.length) == (start, end - start)
        assert reader.info.size == len(RANGE_DATA)
        assert reader.info.etag == md5(RANGE_DATA)
        assert reader.info.content_type == "video/mp2t"
        assert b"".join([c async for c in reader]) == RANGE_DATA[start:end]


@pytest.mark.parametrize(("offset", "length"), [(1000, None), (1000, 1), (5000, 10)])
async def test_range_beyond_end(store: ObjectStore, offset: int, length: int | None) -> None:
    await store.put("r/obj", RANGE_DATA)
    with pytest.raises(RangeNotSatisfiable) as caught:
        await store.get("r/obj", offset=offset, length=length)
    assert caught.value.size == len(RANGE_DATA)


async def test_range_on_empty_object_and_bad_arguments(store: ObjectStore) -> None:
    await store.put("r/empty", b"")
    with pytest.raises(RangeNotSatisfiable):
        await store.get("r/empty", offset=0, length=1)
    with pytest.raises(ValueError):
        await store.get("r/empty", offset=-1)
    with pytest.raises(ValueError):
        await store.get("r/empty", length=0)


async def test_reader_released_midway(store: ObjectStore) -> None:
    data = blob(3 * MIB, seed=3)
    await store.put("r/three", data)
    reader = await store.get("r/three")
    first = await reader.__anext__()
    assert first == data[: len(first)]
    await reader.aclose()
    await reader.aclose()  # idempotent
    assert [c async for c in reader] == []
    # Connections / handles went back: many more reads still work.
    for _ in range(20):
        async with await store.get("r/three", offset=10, length=5) as again:
            assert await again.read() == data[10:15]


# -- delete / list ----------------------------------------------------------------------------


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await store.put("d/one", b"1")
    await store.delete("d/one")
    assert not await store.exists("d/one")
    await store.delete("d/one")
    await store.delete("d/never-was")


async def test_delete_prefix_respects_segments(store: ObjectStore) -> None:
    for key in ["a/b/1", "a/b/2/x", "a/bc/1", "a/bcd", "a/b-c", "z"]:
        await store.put(key, key.encode())

    assert await store.delete_prefix("a/b") == 2
    assert [i.key for i in await store.list()] == ["a/b-c", "a/bc/1", "a/bcd", "z"]
    assert await store.delete_prefix("a/bc/") == 1
    assert await store.delete_prefix("a/nothing") == 0
    assert [i.key for i in await store.list()] == ["a/b-c", "a/bcd", "z"]
    assert await store.delete_prefix("") == 3
    assert await store.list() == []


async def test_list_sorted_recursive_and_prefixed(store: ObjectStore) -> None:
    keys = [
        "videos/vid_b/720p/seg_00002.ts",
        "videos/vid_a/thumb.jpg",
        "videos/vid_b/720p/seg_00001.ts",
        "videos/vid_b/master.m3u8",
        "videos/vid_bb/x",
        "sources/vid_a/original",
    ]
    for key in keys:
        await store.put(key, key.encode())

    everything = await store.list()
    assert [i.key for i in everything] == sorted(keys)
    assert all(i.size == len(i.key) and i.etag == md5(i.key.encode()) for i in everything)
    assert everything[0] == await store.stat(everything[0].key)
    assert [i.key for i in await store.list("videos/vid_b")] == [
        "videos/vid_b/720p/seg_00001.ts",
        "videos/vid_b/720p/seg_00002.ts",
        "videos/vid_b/master.m3u8",
    ]
    assert [i.key for i in await store.list("videos/vid_b/720p/")] == [
        "videos/vid_b/720p/seg_00001.ts",
        "videos/vid_b/720p/seg_00002.ts",
    ]
    assert [i.key for i in await store.list("videos/vid_a/thumb.jpg")] == ["videos/vid_a/thumb.jpg"]
    assert await store.list("nothing/here") == []


async def test_list_hides_multipart_staging(harness: Harness) -> None:
    store = harness.store
    await store.put("visible", b"v")
    upload_id = await store.create_multipart("staged/object")
    await store.put_part("staged/object", upload_id, 1, b"part", size=4)

    assert [i.key for i in await store.list()] == ["visible"]
    assert not await store.exists("staged/object")
    assert await store.delete_prefix("") == 1
    assert len(harness.leftovers()) > 0  # the upload itself is untouched
    await store.abort_multipart("staged/object", upload_id)


# -- atomicity --------------------------------------------------------------------------------


async def test_put_overwrites_and_open_readers_keep_old_bytes(store: ObjectStore) -> None:
    old, new = blob(2 * MIB, seed=4), blob(1234, seed=5)
    await store.put("o/key", old, content_type="video/mp4")
    async with await store.get("o/key") as reader:
        first = await reader.__anext__()
        info = await store.put("o/key", new, content_type="text/plain")
        rest = b"".join([c async for c in reader])
    assert first + rest == old
    assert await store.stat("o/key") == info
    assert (info.size, info.etag, info.content_type) == (len(new), md5(new), "text/plain")
    assert await store.read_bytes("o/key") == new


async def test_readers_never_see_a_partial_object(store: ObjectStore) -> None:
    versions = [bytes([65 + i]) * (150_000 + 40_000 * i) for i in range(3)]
    await store.put("race/key", versions[0])
    done = anyio.Event()
    seen: list[bytes] = []

    async def writer() -> None:
        for round_ in range(6):
            data = versions[round_ % len(versions)]
            await store.put("race/key", stream(data, 32 * 1024))
        done.set()

    async def reader() -> None:
        while not done.is_set():
            async with await store.get("race/key") as r:
                content = b"".join([c async for c in r])
                assert r.info.size == len(content)
                assert r.info.etag == md5(content)
            seen.append(content)

    async with anyio.create_task_group() as tg:
        tg.start_soon(writer)
        tg.start_soon(reader)
        tg.start_soon(reader)
    assert seen
    assert all(content in versions for content in seen)


async def test_unfinished_put_is_invisible(store: ObjectStore) -> None:
    await store.put("pending/key", b"old")
    half_sent, release = anyio.Event(), anyio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"new-first-half-"
        half_sent.set()
        await release.wait()
        yield b"second-half"

    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: store.put("pending/key", slow()))
        tg.start_soon(lambda: store.put("pending/fresh", slow()))
        await half_sent.wait()
        await anyio.sleep(0.05)
        assert await store.read_bytes("pending/key") == b"old"
        assert not await store.exists("pending/fresh")
        release.set()
    assert await store.read_bytes("pending/key") == b"new-first-half-second-half"


@pytest.mark.parametrize(
    ("declared", "source"),
    [(10, "bytes-short"), (10, "bytes-long"), (100_000, "stream-short"), (10, "stream-long")],
)
async def test_size_mismatch_stores_nothing(harness: Harness, declared: int, source: str) -> None:
    store = harness.store
    await store.put("sm/existing", b"keep me")
    data = blob(declared - 1 if source.endswith("short") else declared + 1)
    payload = data if source.startswith("bytes") else stream(data, 4096)
    for key in ("sm/new", "sm/existing"):
        with pytest.raises(SizeMismatch):
            await store.put(key, payload, size=declared)
        payload = data if source.startswith("bytes") else stream(data, 4096)
    assert not await store.exists("sm/new")
    assert await store.read_bytes("sm/existing") == b"keep me"
    assert harness.leftovers() == []


@pytest.mark.parametrize("fail_after", [1024, 9 * MIB], ids=["early", "after-a-part"])
async def test_crash_mid_put_leaves_nothing(harness: Harness, fail_after: int) -> None:
    store = harness.store

    async def crashing() -> AsyncIterator[bytes]:
        sent = 0
        while sent < fail_after:
            piece = min(MIB, fail_after - sent)
            yield b"x" * piece
            sent += piece
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("crash/key", crashing())
    assert not await store.exists("crash/key")
    assert await store.list() == []
    assert harness.leftovers() == []


# -- multipart --------------------------------------------------------------------------------


async def test_multipart_parts_out_of_order(harness: Harness) -> None:
    store = harness.store
    bodies = {1: blob(PART, seed=11), 2: blob(PART, seed=12), 3: blob(1000, seed=13)}
    upload_id = await store.create_multipart("sources/vid_mp/original", content_type="video/mp4")
    assert isinstance(upload_id, str)
    assert upload_id

    infos = {}
    for number in (3, 1, 2):
        infos[number] = await store.put_part(
            "sources/vid_mp/original", upload_id, number, bodies[number], size=len(bodies[number])
        )
        assert (infos[number].part_number, infos[number].size) == (number, len(bodies[number]))
        assert re.fullmatch(r"[0-9a-f]{32}", infos[number].etag)
        if harness.is_s3:  # S3's part etags are the MD5 of the bytes; local ones are tags
            assert infos[number].etag == md5(bodies[number])
    assert len({info.etag for info in infos.values()}) == 3
    assert await store.list_parts("sources/vid_mp/original", upload_id) == [
        infos[1],
        infos[2],
        infos[3],
    ]
    assert not await store.exists("sources/vid_mp/original")

    info = await store.complete_multipart(
        "sources/vid_mp/original", upload_id, [infos[2], infos[3], infos[1]]
    )
    whole = bodies[1] + bodies[2] + bodies[3]
    assert (info.size, info.content_type) == (len(whole), "video/mp4")
    expected = hashlib.md5(b"".join(bytes.fromhex(infos[n].etag) for n in (1, 2, 3)))
    assert info.etag == f"{expected.hexdigest()}-3"
    assert await store.stat("sources/vid_mp/original") == info
    digest = hashlib.md5()
    async with await store.get("sources/vid_mp/original") as reader:
        async for chunk in reader:
            digest.update(chunk)
    assert digest.hexdigest() == md5(whole)
    assert (
        await read_all(store, "sources/vid_mp/original", offset=PART - 3, length=6)
        == (whole[PART - 3 : PART + 3])
    )
    assert harness.leftovers() == []
    with pytest.raises(MultipartNotFound):
        await store.list_parts("sources/vid_mp/original", upload_id)


async def test_multipart_concurrent_streamed_parts(harness: Harness) -> None:
    store = harness.store
    bodies = [blob(PART, seed=21), blob(PART, seed=22), blob(777, seed=23)]
    upload_id = await store.create_multipart("up/concurrent")
    results: dict[int, PartInfo] = {}

    async def send(number: int) -> None:
        body = bodies[number - 1]
        results[number] = await store.put_part(
            "up/concurrent", upload_id, number, stream(body, 256 * 1024), size=len(body)
        )

    async with anyio.create_task_group() as tg:
        for number in (1, 2, 3):
            tg.start_soon(send, number)
    parts = await store.list_parts("up/concurrent", upload_id)
    assert parts == [results[1], results[2], results[3]]
    await store.complete_multipart("up/concurrent", upload_id, parts)
    assert await store.read_bytes("up/concurrent") == b"".join(bodies)


async def test_resending_a_part_replaces_it(store: ObjectStore) -> None:
    upload_id = await store.create_multipart("up/resend", content_type="text/plain")
    first = await store.put_part("up/resend", upload_id, 1, b"first try", size=9)
    second = await store.put_part("up/resend", upload_id, 1, b"second!", size=7)
    assert first.etag != second.etag
    assert await store.list_parts("up/resend", upload_id) == [second]

    with pytest.raises(InvalidPart):  # the replaced part is gone
        await store.complete_multipart("up/resend", upload_id, [first])
    info = await store.complete_multipart("up/resend", upload_id, [second])
    assert await store.read_bytes("up/resend") == b"second!"
    assert (info.size, info.content_type) == (7, "text/plain")


async def test_abort_removes_everything(harness: Harness) -> None:
    store = harness.store
    upload_id = await store.create_multipart("up/aborted")
    await store.put_part("up/aborted", upload_id, 1, b"abc", size=3)
    await store.put_part("up/aborted", upload_id, 2, b"def", size=3)

    await store.abort_multipart("up/aborted", upload_id)
    await store.abort_multipart("up/aborted", upload_id)  # idempotent
    assert harness.leftovers() == []
    assert not await store.exists("up/aborted")
    with pytest.raises(MultipartNotFound):
        await store.list_parts("up/aborted", upload_id)
    with pytest.raises(MultipartNotFound):
        await store.put_part("up/aborted", upload_id, 3, b"ghi", size=3)
    with pytest.raises(MultipartNotFound):
        await store.complete_multipart("up/aborted", upload_id, [PartInfo(1, md5(b"abc"), 3)])


async def test_unknown_upload(store: ObjectStore) -> None:
    for bogus in ("no-such-upload", "0" * 32, ""):
        with pytest.raises(MultipartNotFound):
            await store.complete_multipart("up/x", bogus, [PartInfo(1, md5(b"a"), 1)])
        with pytest.raises(MultipartNotFound):
            await store.list_parts("up/x", bogus)
        await store.abort_multipart("up/x", bogus)
    with pytest.raises(MultipartNotFound):
        await store.put_part("up/x", "0" * 32, 1, b"a", size=1)


async def test_bad_part_lists_keep_the_upload(store: ObjectStore) -> None:
    upload_id = await store.create_multipart("up/bad")
    part = await store.put_part("up/bad", upload_id, 1, b"data", size=4)

    with pytest.raises(InvalidPart):
        await store.complete_multipart("up/bad", upload_id, [])
    with pytest.raises(InvalidPart):
        await store.complete_multipart("up/bad", upload_id, [PartInfo(1, md5(b"other"), 5)])
    with pytest.raises(InvalidPart):
        await store.complete_multipart("up/bad", upload_id, [part, PartInfo(2, md5(b"x"), 1)])
    assert not await store.exists("up/bad")
    # The upload survives a refused complete, so the client can fix its list and retry.
    assert await store.list_parts("up/bad", upload_id) == [part]
    await store.complete_multipart("up/bad", upload_id, [PartInfo(1, f'"{part.etag}"', 4)])
    assert await store.read_bytes("up/bad") == b"data"


async def test_part_size_mismatch_and_bounds(store: ObjectStore) -> None:
    upload_id = await store.create_multipart("up/bounds")
    with pytest.raises(SizeMismatch):
        await store.put_part("up/bounds", upload_id, 1, b"abc", size=4)
    with pytest.raises(SizeMismatch):
        await store.put_part("up/bounds", upload_id, 1, stream(b"abcde", 2), size=4)
    for number in (0, 10_001):
        with pytest.raises(ValueError):
            await store.put_part("up/bounds", upload_id, number, b"a", size=1)
    assert await store.list_parts("up/bounds", upload_id) == []
    await store.put_part("up/bounds", upload_id, 10_000, b"a", size=1)
    assert [p.part_number for p in await store.list_parts("up/bounds", upload_id)] == [10_000]
    await store.abort_multipart("up/bounds", upload_id)


# -- keys -------------------------------------------------------------------------------------

BAD_KEYS = {
    "empty": "",
    "absolute": "/etc/passwd",
    "dotdot": "a/../../etc/passwd",
    "only-dotdot": "..",
    "dot": "a/./b",
    "backslash": "a\\b",
    "nul": "a\x00b",
    "newline": "a\nb",
    "del": "a\x7fb",
    "too-long": "k" * 1025,
    "long-segment": "s" * 256,
    "trailing-slash": "a/b/",
    "double-slash": "a//b",
    "reserved": ".avc/meta/x",
}


@pytest.mark.parametrize("key", list(BAD_KEYS.values()), ids=list(BAD_KEYS))
async def test_invalid_keys_rejected(store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        await store.put(key, b"x")
    with pytest.raises(ValueError):  # InvalidKey is a ValueError too
        await store.get(key)
    for call in (store.stat, store.exists, store.delete, store.create_multipart):
        with pytest.raises(InvalidKey):
            await call(key)
    with pytest.raises(InvalidKey):
        await store.put_part(key, "0" * 32, 1, b"x", size=1)
    assert await store.list() == []


async def test_unusual_but_valid_keys(store: ObjectStore) -> None:
    longest = "/".join(["a" * 255, "b" * 255, "c" * 255, "d" * 254, "e"])
    assert len(longest.encode()) == 1024
    keys = ["vidéos/ünïcode 日本.ts", "with space/and+plus=&?#", "...", "a/.hidden", longest]
    for key in keys:
        await store.put(key, key.encode())
    assert [i.key for i in await store.list()] == sorted(keys)
    for key in keys:
        assert await store.read_bytes(key) == key.encode()


# -- lifecycle --------------------------------------------------------------------------------


async def test_start_is_idempotent_and_ping_ok(store: ObjectStore) -> None:
    await store.start()
    await store.ping()
    await store.put("after/restart", b"ok")
    await store.start()
    assert await store.read_bytes("after/restart") == b"ok"


async def test_ping_fails_when_backend_is_gone(harness: Harness) -> None:
    broken = harness.broken()
    started = time.monotonic()
    try:
        with pytest.raises(ObjectsError):
            await broken.ping()
    finally:
        await broken.close()
    assert time.monotonic() - started < 10


async def test_placed_parts_capability_is_accepted_and_checked(store: ObjectStore) -> None:
    """PlacedParts is optional: the local store has it (parts written in place), S3 does not
    (it places parts itself); where it is, the part size is checked and the parts complete."""
    placed = placed_parts(store)
    if isinstance(store, S3ObjectStore):
        assert placed is None
        return
    assert placed is not None
    bodies = [blob(PART, seed=31), blob(PART, seed=32), blob(5, seed=33)]
    upload_id = await placed.create_placed_multipart("up/hinted", part_size=PART)
    parts = [
        await store.put_part("up/hinted", upload_id, n, body, size=len(body))
        for n, body in ((3, bodies[2]), (1, bodies[0]), (2, bodies[1]))
    ]
    info = await store.complete_multipart("up/hinted", upload_id, parts)
    assert info.size == 2 * PART + 5
    assert await store.read_bytes("up/hinted") == b"".join(bodies)
    for bad in (0, -5, 6 * 1024**3):
        with pytest.raises(ValueError, match="part_size"):
            await placed.create_placed_multipart("up/hinted-bad", part_size=bad)
