"""The playback-token key: from `AVC_PLAYBACK_SECRET`, or generated once under the data dir.

A generated key lives in `<data dir>/secrets/media.json` (0600, in a 0700 folder), created
atomically and never overwritten, so processes starting together (all-in-one, or `media` and
`media-worker` on one machine) end up with the same value and playback links survive restarts.
Several media replicas on several machines must be given the same `AVC_PLAYBACK_SECRET` instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Final

from avc_media.settings import MIN_SECRET_BYTES, MediaSettings

SECRETS_FILE: Final = Path("secrets") / "media.json"
_FIELD: Final = "playback_secret"


class SecretsError(RuntimeError):
    """The secrets file cannot be read or written."""


def resolve_playback_secret(settings: MediaSettings, data_dir: Path) -> tuple[bytes, Path | None]:
    """Returns the key, and the file it was read from or written to (None: from the env)."""
    given = settings.playback_secret.get_secret_value()
    if given:
        return given.encode(), None
    path = data_dir / SECRETS_FILE
    try:
        return _read(path).encode(), path
    except FileNotFoundError:
        pass
    fresh = secrets.token_hex(32)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = _create_exclusive(path, json.dumps({_FIELD: fresh}, indent=2) + "\n")
    except OSError as exc:
        raise SecretsError(
            f"cannot write {path} ({exc.strerror or exc}); set AVC_PLAYBACK_SECRET instead"
        ) from None
    # Lost a race with another process: its file is the one everybody uses.
    return (fresh if created else _read(path)).encode(), path


def _create_exclusive(path: Path, text: str) -> bool:
    """Returns True when `path` was created with `text`, False when it already existed."""
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


def _read(path: Path) -> str:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise SecretsError(f"cannot read {path}: {exc}") from None
    value = data.get(_FIELD) if isinstance(data, dict) else None
    if not isinstance(value, str) or len(value.encode()) < MIN_SECRET_BYTES:
        raise SecretsError(f"{path} does not hold a valid playback secret; remove it or fix it")
    return value
