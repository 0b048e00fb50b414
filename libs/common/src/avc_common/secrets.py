"""The one length rule for secrets read from configuration (HMAC and JWT keys).

Settings classes type such a field as `OptionalSecret` (empty: the component generates one and
keeps it under the data dir) instead of each writing its own validator and minimum.
"""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, SecretStr

MIN_SECRET_BYTES: Final = 32
GENERATE_HINT: Final = "e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`"


def check_secret_length(value: str) -> str:
    """Returns `value`; raises ValueError when it is shorter than MIN_SECRET_BYTES (UTF-8)."""
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ValueError(f"must be at least {MIN_SECRET_BYTES} bytes ({GENERATE_HINT})")
    return value


def _empty_or_long_enough(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    if raw:
        check_secret_length(raw)
    return value


OptionalSecret = Annotated[SecretStr, AfterValidator(_empty_or_long_enough)]
"""A secret setting: empty (generated elsewhere) or at least MIN_SECRET_BYTES long."""
