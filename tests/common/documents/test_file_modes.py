"""Databases and the data dir are this user's alone: the data dir and SQLite folders 0700, the
database files (and their -wal/-shm) 0600, whatever the umask; ones left 0755/0644 by earlier
versions are tightened when opened. `webhooks.db` holds signing secrets."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from avc_common.config import Settings
from avc_common.documents import open_documents
from avc_common.runtime import Adapters


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what made 0755/0644 before
    try:
        yield
    finally:
        os.umask(old)


async def test_a_new_database_and_its_folder_are_private(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "data"
    db = await open_documents(f"sqlite://{folder}", "webhooks")
    try:
        await db.collection("endpoints").insert_one({"_id": "whk_1", "secret": "whsec_x"})
        files = sorted(p.name for p in folder.iterdir())
        assert files == ["webhooks.db", "webhooks.db-shm", "webhooks.db-wal"]
        assert {name: mode(folder / name) for name in files} == dict.fromkeys(files, 0o600)
        assert mode(folder) == 0o700
    finally:
        await db.close()


async def test_existing_open_files_are_tightened(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    db = await open_documents(f"sqlite://{folder}", "webhooks")
    await db.collection("endpoints").insert_one({"_id": "whk_1"})
    await db.close()
    for path in (folder, *folder.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    db = await open_documents(f"sqlite://{folder}", "webhooks")
    try:
        assert mode(folder) == 0o700
        for path in folder.iterdir():
            assert mode(path) == 0o600, path.name
        assert await db.collection("endpoints").find_one({"_id": "whk_1"}) is not None
    finally:
        await db.close()


async def test_the_data_dir_and_what_adapters_make_in_it_are_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # as `avcaption serve` makes it, before the adapters open
    adapters = Adapters(Settings(data_dir=data))
    try:
        await (await adapters.documents("webhooks")).collection("c").insert_one({"_id": "x"})
        await (await adapters.objects()).put("sources/vid_x/original", b"video")
    finally:
        await adapters.aclose()
    assert mode(data) == 0o700
    assert mode(data / "objects") == 0o700
    assert mode(data / "webhooks.db") == 0o600
    internal = data / "objects" / ".avc"
    assert {p.name: mode(p) for p in internal.iterdir()} == {
        name: 0o700 for name in ("meta", "multipart", "tmp", "trash")
    }
