"""Gateway settings: `AVC_GATEWAY_*` variables, the old names still read (with a warning), the
two secrets under their kept names, and the shared secret-length rule."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import SecretStr, ValidationError

from avc_common.secrets import MIN_SECRET_BYTES
from avc_gateway.config import RENAMED_ENV, GatewaySettings
from avc_gateway.proxy.config import RENAMED_ENV as PROXY_RENAMED_ENV
from avc_gateway.proxy.config import ProxySettings

SECRET = "s" * 40
_PRINT_SETTINGS = (
    "import json; from avc_gateway.config import GatewaySettings; "
    "from avc_gateway.proxy.config import ProxySettings; "
    "gw = GatewaySettings(); "
    "print(json.dumps({**gw.model_dump(mode='json'), **ProxySettings().model_dump(mode='json'), "
    "'jwt_secret': gw.jwt_secret.get_secret_value()}))"
)
# A value each field accepts that differs from its default.
_SAMPLE = {
    "jwt_issuer": "issuer-x",
    "jwt_audience": "audience-x",
    "jwt_ttl_seconds": 120,
    "trust_forwarded_for": True,
    "last_used_flush_seconds": 7.0,
    "proxy_keepalive_expiry": 2.0,
    "openapi_cache_seconds": 3.0,
}


def _sample(field: str) -> object:
    if field in _SAMPLE:
        return _SAMPLE[field]
    return 77.0 if field.endswith(("timeout", "seconds")) else 77


def _settings_in_a_new_process(env: dict[str, str]) -> tuple[dict[str, object], str]:
    """Returns the settings a fresh process reads from `env` (no other AVC_ variables), and
    what it logged."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    done = subprocess.run(
        [sys.executable, "-c", _PRINT_SETTINGS],
        env={**clean, "AVC_LOG_JSON": "false", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    *logged, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join(logged) + done.stderr


def test_settings_are_read_from_avc_gateway_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVC_GATEWAY_JWT_TTL_SECONDS", "120")
    monkeypatch.setenv("AVC_GATEWAY_TRUST_FORWARDED_FOR", "true")
    monkeypatch.setenv("AVC_GATEWAY_PROXY_READ_TIMEOUT", "9")
    monkeypatch.setenv("AVC_GATEWAY_OPENAPI_CACHE_SECONDS", "4")
    monkeypatch.setenv("AVC_JWT_SECRET", SECRET)
    monkeypatch.setenv("AVC_API_KEY_SECRET", SECRET + "k")
    gateway, proxy = GatewaySettings(), ProxySettings()
    assert gateway.jwt_ttl_seconds == 120
    assert gateway.trust_forwarded_for is True
    assert gateway.jwt_secret.get_secret_value() == SECRET
    assert gateway.api_key_secret.get_secret_value() == SECRET + "k"
    assert proxy.proxy_read_timeout == 9
    assert proxy.openapi_cache_seconds == 4


def test_the_secrets_keep_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/configuration.md says why: a missed rename would silently regenerate them. The
    # prefixed name is read too (nobody following the convention ends up with a generated
    # secret), but the kept name wins and is the one the deployment files use.
    assert "AVC_JWT_SECRET" not in RENAMED_ENV
    assert "AVC_API_KEY_SECRET" not in RENAMED_ENV
    monkeypatch.delenv("AVC_JWT_SECRET", raising=False)
    monkeypatch.setenv("AVC_GATEWAY_JWT_SECRET", SECRET)
    assert GatewaySettings().jwt_secret.get_secret_value() == SECRET
    monkeypatch.setenv("AVC_JWT_SECRET", "k" * MIN_SECRET_BYTES)
    assert GatewaySettings().jwt_secret.get_secret_value() == "k" * MIN_SECRET_BYTES
    # Built in code, the fields keep their names.
    assert GatewaySettings(jwt_secret=SecretStr(SECRET)).jwt_secret.get_secret_value() == SECRET


def test_every_old_name_still_works_with_a_warning() -> None:
    renamed = {**RENAMED_ENV, **PROXY_RENAMED_ENV}
    assert len(renamed) == 25
    env = {old: str(_sample(field)).lower() for old, field in renamed.items()}
    values, logged = _settings_in_a_new_process({**env, "AVC_JWT_SECRET": SECRET})
    for old, field in renamed.items():
        assert values[field] == _sample(field), old
    warnings = [line for line in logged.splitlines() if "deprecated_env" in line]
    assert len(warnings) == len(renamed), logged
    for old, field in renamed.items():
        [line] = [w for w in warnings if f"variable={old}" in w.split()]
        assert f"replaced_by=AVC_GATEWAY_{field.upper()}" in line.split()
    assert values["jwt_secret"] == SECRET
    assert SECRET not in logged  # the secret is neither renamed nor logged


def test_the_new_name_wins_over_the_old_one() -> None:
    values, logged = _settings_in_a_new_process(
        {
            "AVC_GATEWAY_READ_RATE_LIMIT_PER_MINUTE": "500",
            "AVC_READ_RATE_LIMIT_PER_MINUTE": "5",
            "AVC_GATEWAY_PROXY_CONNECT_TIMEOUT": "2",
            "AVC_PROXY_CONNECT_TIMEOUT": "1",
        }
    )
    assert values["read_rate_limit_per_minute"] == 500
    assert values["proxy_connect_timeout"] == 2
    assert logged.count("deprecated_env_ignored") == 2, logged


def test_unchanged_settings_log_nothing() -> None:
    values, logged = _settings_in_a_new_process({"AVC_GATEWAY_JWT_ISSUER": "me"})
    assert values["jwt_issuer"] == "me"
    assert "deprecated_env" not in logged


@pytest.mark.parametrize("field", ["jwt_secret", "api_key_secret"])
def test_secrets_follow_the_shared_length_rule(field: str) -> None:
    GatewaySettings(**{field: SecretStr("x" * MIN_SECRET_BYTES)})
    GatewaySettings(**{field: SecretStr("")})  # empty: generated under the data dir
    with pytest.raises(ValidationError, match=f"at least {MIN_SECRET_BYTES} bytes"):
        GatewaySettings(**{field: SecretStr("x" * (MIN_SECRET_BYTES - 1))})
