"""The playback-token key: from `AVC_MEDIA_PLAYBACK_SECRET`, or generated once under the data dir.

A generated key lives in `<data dir>/secrets/media.json` (0600, in a 0700 folder), created
atomically and never overwritten, so processes starting together (all-in-one, or `media` and
`media-worker` on one machine) end up with the same value and playback links survive restarts.
Several media replicas on several machines must be given the same `AVC_MEDIA_PLAYBACK_SECRET`
instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from avc_common.secrets_file import SecretsError, load_or_create
from avc_media.config import MediaSettings

__all__ = ["SECRETS_FILE", "SecretsError", "resolve_playback_secret"]

SECRETS_FILE: Final = Path("secrets") / "media.json"
_FIELD: Final = "playback_secret"


def resolve_playback_secret(settings: MediaSettings, data_dir: Path) -> tuple[bytes, Path | None]:
    """Returns the key, and the file it was read from or written to (None: from the env)."""
    given = settings.playback_secret.get_secret_value()
    if given:
        return given.encode(), None
    path = data_dir / SECRETS_FILE
    stored, _ = load_or_create(path, (_FIELD,), env_hint="AVC_MEDIA_PLAYBACK_SECRET")
    return stored[_FIELD].encode(), path
