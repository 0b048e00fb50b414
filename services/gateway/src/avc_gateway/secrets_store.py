"""The gateway's signing keys: from the environment, or generated once under the data dir.

Generated secrets let the quick start keep its API keys and sessions across restarts. They live
in `<data dir>/secrets/gateway.json` (0600, in a 0700 folder), created atomically and never
overwritten, so two processes starting together end up with the same values. Production sets
`AVC_JWT_SECRET` and `AVC_API_KEY_SECRET` from a Kubernetes Secret instead: every replica (and
the admin CLI) must use the same values.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from avc_common.secrets_file import SecretsError, load_or_create
from avc_gateway.config import GatewaySettings

__all__ = ["SECRETS_FILE", "GatewaySecrets", "SecretsError", "resolve_secrets"]

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


def resolve_secrets(settings: GatewaySettings, data_dir: Path) -> GatewaySecrets:
    """Returns the secrets from the settings, filling empty ones from (or into) the data dir."""
    given = {
        "jwt_secret": settings.jwt_secret.get_secret_value(),
        "api_key_secret": settings.api_key_secret.get_secret_value(),
    }
    if all(given.values()):
        return GatewaySecrets(given["jwt_secret"], given["api_key_secret"])
    path = data_dir / SECRETS_FILE
    stored, created = load_or_create(
        path, _FIELDS, env_hint="AVC_JWT_SECRET and AVC_API_KEY_SECRET"
    )
    return GatewaySecrets(
        jwt_secret=given["jwt_secret"] or stored["jwt_secret"],
        api_key_secret=given["api_key_secret"] or stored["api_key_secret"],
        generated_at=path if created else None,
    )
