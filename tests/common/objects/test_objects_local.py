"""What only the local-directory adapter can get wrong: paths, symlinks, sidecars, temp files."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avc_common.objects import InvalidKey, LocalObjectStore, ObjectNotFound


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalObjectStore]:
    store = LocalObjectStore(tmp_path / "root")
    await store.start()
    yield store
    await store.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret").write_bytes(b"do not touch")
    return directory


async def test_symlinked_directory_cannot_escape(local: LocalObjectStore, outside: Path) -> None:
    os.symlink(outside, Path(local.root) / "evil")

    with pytest.raises(InvalidKey):
        await local.put("evil/planted", b"x")
    with pytest.raises(InvalidKey):
        await local.get("evil/secret")
    with pytest.raises(InvalidKey):
        await local.stat("evil/secret")
    with pytest.raises(InvalidKey):
        await local.delete("evil/secret")
    with pytest.raises(InvalidKey):
        await local.delete_prefix("evil")
    with pytest.raises(InvalidKey):
        await local.create_multipart("evil/planted")
    assert await local.list() == []
    assert await local.delete_prefix("") == 0
    assert os.listdir(outside) == ["secret"]
    assert (outside / "secret").read_bytes() == b"do not touch"


async def test_symlinked_file_cannot_escape(local: LocalObjectStore, outside: Path) -> None:
    os.symlink(outside / "secret", Path(local.root) / "link")
    with pytest.raises(InvalidKey):
        await local.read_bytes("link")
    assert await local.list() == []
    assert (outside / "secret").read_bytes() == b"do not touch"


async def test_internal_directory_is_not_reachable_through_symlinks(
    local: LocalObjectStore,
) -> None:
    await local.put("real", b"r")
    os.symlink(Path(local.root) / ".avc" / "meta", Path(local.root) / "peek")
    with pytest.raises(InvalidKey):
        await local.read_bytes("peek/real")


async def test_objects_are_plain_files_with_sidecars(local: LocalObjectStore) -> None:
    await local.put("sources/vid_abc/original", b"video bytes", content_type="video/mp4")
    root = Path(local.root)
    assert (root / "sources" / "vid_abc" / "original").read_bytes() == b"video bytes"
    assert (root / ".avc" / "meta" / "sources" / "vid_abc" / "original").is_file()
    assert list((root / ".avc" / "tmp").iterdir()) == []


async def test_key_and_prefix_cannot_both_be_objects(local: LocalObjectStore) -> None:
    await local.put("a/b", b"file")
    with pytest.raises(InvalidKey):
        await local.put("a/b/c", b"below a file")
    await local.put("x/y/z", b"deep")
    with pytest.raises(InvalidKey):
        await local.put("x/y", b"over a prefix")
    assert await local.read_bytes("a/b") == b"file"
    assert await local.read_bytes("x/y/z") == b"deep"
    assert list((Path(local.root) / ".avc" / "tmp").iterdir()) == []


async def test_empty_directories_are_pruned(local: LocalObjectStore) -> None:
    await local.put("videos/vid_1/720p/seg_00001.ts", b"1")
    await local.put("videos/vid_2/thumb.jpg", b"2")
    await local.delete("videos/vid_1/720p/seg_00001.ts")
    root = Path(local.root)
    assert not (root / "videos" / "vid_1").exists()
    assert not (root / ".avc" / "meta" / "videos" / "vid_1").exists()
    assert (root / "videos" / "vid_2").is_dir()

    assert await local.delete_prefix("videos") == 1
    assert os.listdir(root) == [".avc"]
    assert list((root / ".avc" / "meta").iterdir()) == []


async def test_file_copied_in_by_hand_is_served(local: LocalObjectStore) -> None:
    (Path(local.root) / "manual").mkdir()
    (Path(local.root) / "manual" / "file.bin").write_bytes(b"no sidecar")

    first = await local.stat("manual/file.bin")
    assert (first.size, first.content_type) == (10, "application/octet-stream")
    assert first == await local.stat("manual/file.bin")  # a stable etag
    assert await local.read_bytes("manual/file.bin") == b"no sidecar"
    assert [i.key for i in await local.list()] == ["manual/file.bin"]


async def test_stale_sidecar_is_not_trusted(local: LocalObjectStore) -> None:
    await local.put("k", b"old bytes", content_type="text/plain")
    # What a crash between the two renames of another process leaves behind.
    path = Path(local.root) / "k"
    replacement = path.with_name("k.new")
    replacement.write_bytes(b"new bytes!")
    os.replace(replacement, path)

    info = await local.stat("k")
    assert info.size == 10
    assert info.etag != hashlib.md5(b"old bytes").hexdigest()
    assert info.content_type == "application/octet-stream"
    async with await local.get("k") as reader:
        assert reader.info == info
        assert await reader.read() == b"new bytes!"


async def test_multipart_staging_and_cleanup(local: LocalObjectStore) -> None:
    upload_id = await local.create_multipart("up/key")
    staging = Path(local.root) / ".avc" / "multipart" / upload_id
    part = await local.put_part("up/key", upload_id, 2, b"tiny part", size=9)
    # No 5 MiB minimum here: the local adapter is not artificially strict.
    first = await local.put_part("up/key", upload_id, 1, b"a", size=1)
    assert sorted(p.name for p in staging.iterdir()) == [
        f"00001.{first.etag}.part",
        f"00002.{part.etag}.part",
        "upload.json",
    ]
    await local.complete_multipart("up/key", upload_id, [first, part])
    assert not staging.exists()
    assert await local.read_bytes("up/key") == b"atiny part"


async def test_upload_belongs_to_its_key(local: LocalObjectStore) -> None:
    upload_id = await local.create_multipart("up/one")
    await local.abort_multipart("up/other", upload_id)  # not this key's upload: untouched
    part = await local.put_part("up/one", upload_id, 1, b"x", size=1)
    with pytest.raises(ObjectNotFound):
        await local.stat("up/other")
    await local.complete_multipart("up/one", upload_id, [part])


async def test_stale_temp_files_are_swept_on_start(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "root")
    tmp = tmp_path / "root" / ".avc" / "tmp"
    old, young = tmp / ".tmp-old", tmp / ".tmp-young"
    old.write_bytes(b"left by a crash")
    young.write_bytes(b"being written by another process")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    await store.start()
    assert sorted(p.name for p in tmp.iterdir()) == [".tmp-young"]


async def test_file_io_runs_off_the_event_loop(
    local: LocalObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    real_write, real_pread = os.write, os.pread

    def write(fd: int, data: bytes) -> int:
        threads.add(threading.get_ident())
        return real_write(fd, data)

    def pread(fd: int, n: int, offset: int) -> bytes:
        threads.add(threading.get_ident())
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "pread", pread)
    await local.put("t/k", b"x" * 3_000_000)
    assert await local.read_bytes("t/k") == b"x" * 3_000_000
    assert threads
    assert loop_thread not in threads
