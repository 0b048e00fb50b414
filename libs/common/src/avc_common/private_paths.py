"""Directories and files only this process's user may read: the data dir, SQLite databases
(`webhooks.db` holds signing secrets) and local object storage (users' videos). Directories are
0700 and files 0600 whatever the umask; ones made by earlier versions (0755/0644) are tightened
when opened, if this user owns them (otherwise they are left as the operator set them)."""

from __future__ import annotations

import os
import stat
from typing import Final

PRIVATE_DIR: Final = 0o700
PRIVATE_FILE: Final = 0o600


def private_dir(path: str | os.PathLike[str]) -> None:
    """Creates `path` (and missing parents) 0700, or tightens an existing one to 0700."""
    os.makedirs(path, mode=PRIVATE_DIR, exist_ok=True)
    tighten(path, PRIVATE_DIR)


def private_file(path: str | os.PathLike[str]) -> None:
    """Creates `path` empty and 0600 if it is missing, or tightens an existing one to 0600."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE))
    tighten(path, PRIVATE_FILE)


def tighten(path: str | os.PathLike[str], mode: int) -> None:
    """Drops the permission bits of `path` that `mode` does not have (if it exists and this
    user owns it)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    current = stat.S_IMODE(st.st_mode)
    if st.st_uid == os.geteuid() and current & ~mode:
        os.chmod(path, current & mode)
