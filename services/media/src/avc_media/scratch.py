"""Scratch folders of encode workers, and the sweep that removes those dead workers left behind.

A worker killed with `kill -9` cannot clean up: its source copy and partial segments would stay
forever. Several workers may share one scratch root (the all-in-one process next to a separate
`media-worker`, replicas with a shared volume), so a sweep must only remove what no live worker
owns. Each worker process therefore encodes under its own folder,

    <root>/avc-media-<token>/owner.json     host, pid, boot id, start time
    <root>/avc-media-<token>/avc-encode-…   one folder per running encode (Encoder's)

and holds an exclusive `flock` on `owner.json` for its whole life. The kernel drops that lock
when the process dies, however it dies, so a sweeper on the same kernel (same boot id: any
process or container of this machine) that can take the lock knows the owner is gone. The
folder is set up under a hidden name and renamed once locked, so a sweep never sees it
unlocked. Where the lock proves nothing — an owner on another machine (a network volume), a
folder without a readable marker, a bare `avc-encode-*` folder of an older version — the folder
is removed only once nothing in it changed for `min_age` seconds; a live worker touches its
marker at every sweep, and a live encode writes segments all the time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from avc_common.logging import get_logger

log = get_logger(__name__)

PREFIX: Final = "avc-media-"
MARKER: Final = "owner.json"
LEGACY_PREFIX: Final = "avc-encode-"
"""Encode folders that older versions created directly in the root."""
_SETUP_PREFIX: Final = f".{PREFIX}"
_BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")


def boot_id() -> str:
    """Returns an id of the running kernel, shared by every process and container on it."""
    try:
        return _BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return f"host:{socket.gethostname()}"


def _try_lock(handle: IO[bytes]) -> bool:
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@dataclass
class ScratchFolder:
    """This process's scratch folder, locked until `release()` (or the process's death)."""

    path: Path
    _marker: IO[bytes]

    def touch(self) -> None:
        """Marks the folder as in use (the age rule for sweepers on other machines); sets it up
        again when a sweeper elsewhere removed it while this worker was idle."""
        if not (self.path / MARKER).is_file():
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker = _locked_marker(self.path)
            self._marker.close()
            self._marker = marker
            return
        with contextlib.suppress(OSError):
            os.utime(self._marker.fileno())

    def release(self) -> None:
        """Removes the folder and drops the lock (on a clean stop)."""
        shutil.rmtree(self.path, ignore_errors=True)
        self._marker.close()


def _locked_marker(folder: Path) -> IO[bytes]:
    """Creates `folder/owner.json`, locked and filled in; returns it open (the lock's life)."""
    marker = (folder / MARKER).open("wb")
    try:
        if not _try_lock(marker):  # a fresh file: cannot be held by anyone
            raise RuntimeError(f"cannot lock {marker.name}")
        owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "boot_id": boot_id(),
            "started_at": time.time(),
        }
        marker.write(json.dumps(owner).encode())
        marker.flush()
    except BaseException:
        marker.close()
        raise
    return marker


def claim(root: Path) -> ScratchFolder:
    """Creates and locks a scratch folder for this process under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(6)
    setup = root / f"{_SETUP_PREFIX}{token}"
    setup.mkdir(mode=0o700)
    try:
        marker = _locked_marker(setup)
    except BaseException:
        shutil.rmtree(setup, ignore_errors=True)
        raise
    path = root / f"{PREFIX}{token}"
    try:
        setup.rename(path)
    except BaseException:
        marker.close()
        shutil.rmtree(setup, ignore_errors=True)
        raise
    return ScratchFolder(path, marker)


@dataclass(frozen=True)
class Swept:
    folders: int = 0
    bytes: int = 0


def _usage(path: Path) -> tuple[int, float]:
    """Returns (bytes, newest mtime) of everything under `path`."""
    total, newest = 0, 0.0
    for dirpath, dirnames, filenames in os.walk(path):
        for name in (*dirnames, *filenames, ""):
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(dirpath, name) if name else dirpath)
                newest = max(newest, info.st_mtime)
                if stat.S_ISREG(info.st_mode):
                    total += info.st_size
    return total, newest


def _read_owner(handle: IO[bytes]) -> dict[str, object]:
    try:
        handle.seek(0)
        owner = json.loads(handle.read() or b"{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def sweep(
    root: Path, *, min_age: float, keep: Path | None = None, now: float | None = None
) -> Swept:
    """Removes the scratch folders under `root` that no live worker owns (module docstring);
    never `keep` (the caller's own). Returns what was removed."""
    now = time.time() if now is None else now
    me = boot_id()
    folders = freed = 0
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return Swept()
    for entry in entries:
        name = entry.name
        if not name.startswith((PREFIX, _SETUP_PREFIX, LEGACY_PREFIX)):
            continue
        path = Path(entry.path)
        if keep is not None and path == keep:
            continue
        with contextlib.suppress(OSError):
            if not entry.is_dir(follow_symlinks=False):
                continue
            removed = _sweep_one(path, min_age=min_age, now=now, boot=me)
            if removed is not None:
                folders += 1
                freed += removed
    return Swept(folders, freed)


def _sweep_one(path: Path, *, min_age: float, now: float, boot: str) -> int | None:
    """Removes one folder when its owner is gone; returns the bytes freed, or None if kept."""
    if path.name.startswith(PREFIX):
        try:
            handle = (path / MARKER).open("rb")
        except FileNotFoundError:
            handle = None
        if handle is not None:
            with handle:
                if not _try_lock(handle):
                    return None  # its worker is alive
                owner = _read_owner(handle)
                if owner.get("boot_id") == boot:
                    # Same kernel: the free lock proves the owner is dead.
                    return _remove(path, reason="owner dead", owner=owner)
                return _remove_if_idle(path, min_age=min_age, now=now, owner=owner)
    return _remove_if_idle(path, min_age=min_age, now=now, owner={})


def _remove_if_idle(
    path: Path, *, min_age: float, now: float, owner: dict[str, object]
) -> int | None:
    _, newest = _usage(path)
    if not newest or now - newest < min_age:  # gone meanwhile (another sweeper), or in use
        return None
    return _remove(path, reason="idle", owner=owner)


def _remove(path: Path, *, reason: str, owner: dict[str, object]) -> int | None:
    size, _ = _usage(path)
    shutil.rmtree(path, ignore_errors=True)
    if path.exists():  # not ours to remove (permissions): say so once per sweep, keep going
        log.warning("scratch_orphan_not_removed", folder=str(path), reason=reason)
        return None
    log.warning(
        "scratch_orphan_removed",
        folder=str(path),
        reason=reason,
        bytes=size,
        owner_host=owner.get("host"),
        owner_pid=owner.get("pid"),
    )
    return size
