"""Local object storage keeps users' videos private: its root and bookkeeping dirs are 0700
whatever the umask, also a root left 0755 by an earlier version."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from avc_common.objects import LocalObjectStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_root_and_internal_dirs_are_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        fresh = LocalObjectStore(tmp_path / "fresh" / "objects")
        await fresh.start()
        await fresh.close()
        existing = tmp_path / "existing"
        existing.mkdir(mode=0o755)
        (existing / ".avc").mkdir(mode=0o755)
        older = LocalObjectStore(existing)
        await older.start()
        await older.close()
    finally:
        os.umask(old)
    for root in (tmp_path / "fresh" / "objects", existing):
        assert mode(root) == 0o700
        internal = root / ".avc"
        assert mode(internal) == 0o700
        for sub in internal.iterdir():
            assert mode(sub) == 0o700, sub
