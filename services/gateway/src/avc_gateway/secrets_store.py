"""The gateway's signing keys: from the environment, or generated once under the data dir.

Generated secrets let the quick start keep its API keys and sessions across restarts. They live
in `<data dir>/secrets/gateway.json` (0600, in a 0700 folder), created atomically and never
overwritten, so two processes starting together end up with the same values. Production sets
`AVC_JWT_SECRET` and `AVC_API_KEY_SECRET` from a Kubernetes Secret instead: every replica (and
the admin CLI) must use the same values.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from avc_gateway.config import MIN_SECRET_BYTES, GatewaySettings

SECRETS_FILE: Final = Path("secrets") / "gateway.json"
_FIELDS: Final = ("jwt_secret", "api_key_secret")


@dataclass(frozen=True)
class GatewaySecrets:
    jwt_secret: str
    api_key_secret: str
    generated_at: Path | None = None
    """The file the secrets were just written to (None when nothing was generated now)."""

    def __repr__(self) -> str:
        return f"GatewaySecrets(generated_at={self.generated_at!r})"


class SecretsError(RuntimeError):
    """The secrets file cannot be read or written."""


def resolve_secrets(settings: GatewaySettings, data_dir: Path) -> GatewaySecrets:
    """Returns the secrets from the settings, filling empty ones from (or into) the data dir."""
    given = {
        "jwt_secret": settings.jwt_secret.get_secret_value(),
        "api_key_secret": settings.api_key_secret.get_secret_value(),
    }
    if all(given.values()):
        return GatewaySecrets(given["jwt_secret"], given["api_key_secret"])
    path = data_dir / SECRETS_FILE
    stored, created = _load_or_create(path)
    return GatewaySecrets(
        jwt_secret=given["jwt_secret"] or stored["jwt_secret"],
        api_key_secret=given["api_key_secret"] or stored["api_key_secret"],
        generated_at=path if created else None,
    )


def _load_or_create(path: Path) -> tuple[dict[str, str], bool]:
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    fresh = {name: secrets.token_hex(32) for name in _FIELDS}
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        created = _create_exclusive(path, json.dumps(fresh, indent=2) + "\n")
    except OSError as exc:
        raise SecretsError(
            f"cannot write {path} ({exc.strerror or exc}); set AVC_JWT_SECRET and "
            "AVC_API_KEY_SECRET instead"
        ) from None
    # Lost a race with another process: its file is the one everybody uses.
    return (fresh, True) if created else (_read(path), False)


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


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise SecretsError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name), str) and len(data[name].encode()) >= MIN_SECRET_BYTES
        for name in _FIELDS
    ):
        raise SecretsError(f"{path} does not hold valid gateway secrets; remove it or fix it")
    return {name: str(data[name]) for name in _FIELDS}
