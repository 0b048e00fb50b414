"""Signing keys generated once and kept under the data dir, for the no-configuration quick start.

A file `<data dir>/secrets/<name>.json` (0600, in a 0700 folder) is created atomically and never
overwritten, so processes starting together end up with the same values and links, sessions and
API keys survive restarts. Production sets the keys from the environment (Kubernetes Secrets)
instead: replicas on several machines must share them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from avc_common.secrets import MIN_SECRET_BYTES


class SecretsError(RuntimeError):
    """The secrets file cannot be read or written."""


def load_or_create(
    path: Path, fields: Sequence[str], *, env_hint: str
) -> tuple[dict[str, str], bool]:
    """Returns the secrets stored at `path`, creating them (random, 256 bits each) when missing,
    and whether this call created them. `env_hint` names the variables to set instead."""
    try:
        return _read(path, fields), False
    except FileNotFoundError:
        pass
    fresh = {name: secrets.token_hex(32) for name in fields}
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = _create_exclusive(path, json.dumps(fresh, indent=2) + "\n")
    except OSError as exc:
        raise SecretsError(
            f"cannot write {path} ({exc.strerror or exc}); set {env_hint} instead"
        ) from None
    # Lost a race with another process: its file is the one everybody uses.
    return (fresh, True) if created else (_read(path, fields), False)


def _create_exclusive(path: Path, text: str) -> bool:
    """Returns True when `path` was created with `text`, False when it already existed.

    Written to a temporary file first and linked into place: readers never see a half-written
    file, and link() refuses to replace an existing one."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _read(path: Path, fields: Sequence[str]) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise SecretsError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name), str) and len(data[name].encode()) >= MIN_SECRET_BYTES
        for name in fields
    ):
        raise SecretsError(f"{path} does not hold valid secrets; remove it or fix it")
    return {name: str(data[name]) for name in fields}
