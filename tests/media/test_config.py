"""Media settings: `AVC_MEDIA_*` variables, the old names still read (with a warning), checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from pydantic import SecretStr, ValidationError

from avc_common.secrets import MIN_SECRET_BYTES
from avc_media.config import REMOVED_ENV, RENAMED_ENV, MediaSettings

SECRET = "s" * 40
_PRINT_SETTINGS = (
    "import json; from avc_media.config import MediaSettings; s = MediaSettings(); "
    "print(json.dumps({'secret': s.playback_secret.get_secret_value(), "
    "'base': s.public_base_url, 'ttl': s.playback_token_ttl_seconds, 'ladder': s.ladder}))"
)


def _settings_in_a_new_process(env: dict[str, str]) -> tuple[dict[str, object], str]:
    """Returns the settings a fresh process reads from `env` (no other AVC_ variables), and
    what it logged."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    done = subprocess.run(
        [sys.executable, "-c", _PRINT_SETTINGS],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    *logged, last = done.stdout.strip().splitlines()
    return json.loads(last), "\n".join(logged) + done.stderr


def test_settings_are_read_from_avc_media_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVC_MEDIA_PLAYBACK_SECRET", SECRET)
    monkeypatch.setenv("AVC_MEDIA_PUBLIC_BASE_URL", "https://v.example.com/")
    monkeypatch.setenv("AVC_MEDIA_LADDER", "720,360")
    monkeypatch.setenv("AVC_MEDIA_LEASE_SECONDS", "12")
    monkeypatch.setenv("AVC_MEDIA_URL", "http://media:8080")  # the gateway's: not a field here
    settings = MediaSettings()
    assert settings.playback_secret.get_secret_value() == SECRET
    assert settings.public_base_url == "https://v.example.com"
    assert settings.ladder_heights == (720, 360)
    assert settings.lease_seconds == 12
    assert settings.lease_heartbeat_seconds == 3


def test_the_old_names_still_work_with_a_warning() -> None:
    values, logged = _settings_in_a_new_process(
        {
            "AVC_PLAYBACK_SECRET": SECRET,
            "AVC_PUBLIC_BASE_URL": "https://old.example.com",
            "AVC_PLAYBACK_TOKEN_TTL_SECONDS": "600",
            "AVC_MEDIA_LADDER": "480",  # unchanged name: no warning
        }
    )
    assert values == {
        "secret": SECRET,
        "base": "https://old.example.com",
        "ttl": 600,
        "ladder": "480",
    }
    warnings = [line for line in logged.splitlines() if "deprecated_env" in line]
    assert len(warnings) == 3, logged
    for old, field in RENAMED_ENV.items():
        [line] = [w for w in warnings if f"variable={old}" in w.split()]
        assert f"AVC_MEDIA_{field.upper()}" in line
    assert "AVC_MEDIA_LADDER" not in "\n".join(warnings)
    assert SECRET not in logged  # the value is never logged


def test_the_new_name_wins_over_the_old_one() -> None:
    values, logged = _settings_in_a_new_process(
        {"AVC_MEDIA_PUBLIC_BASE_URL": "https://new.example.com", "AVC_PUBLIC_BASE_URL": "http://x"}
    )
    assert values["base"] == "https://new.example.com"
    assert "deprecated_env_ignored" in logged
    assert "AVC_PUBLIC_BASE_URL" in logged


def test_a_removed_variable_is_reported_and_ignored() -> None:
    assert REMOVED_ENV == ("AVC_MEDIA_FFPROBE_PATH",)
    values, logged = _settings_in_a_new_process({"AVC_MEDIA_FFPROBE_PATH": "/usr/bin/ffprobe"})
    assert values["ladder"] == "1080,720,480,360"
    assert "removed_env_ignored" in logged
    assert "AVC_MEDIA_FFPROBE_PATH" in logged
    _, quiet = _settings_in_a_new_process({})
    assert "_env" not in quiet


def test_settings_validation() -> None:
    assert MediaSettings(ladder="360, 720,720").ladder_heights == (720, 360)
    for bad in ({"ladder": "abc"}, {"ladder": "721"}, {"x264_preset": "turbo"},
                {"public_base_url": "example.com"}, {"lease_seconds": 1}):  # fmt: skip
        with pytest.raises(ValidationError):
            MediaSettings(**bad)  # type: ignore[arg-type]
    assert MediaSettings(public_base_url="https://v.example.com/").public_base_url == (
        "https://v.example.com"
    )


def test_the_playback_secret_has_the_shared_minimum_length() -> None:
    assert MediaSettings().playback_secret.get_secret_value() == ""  # generated later
    MediaSettings(playback_secret=SecretStr("x" * MIN_SECRET_BYTES))
    with pytest.raises(ValidationError, match=f"at least {MIN_SECRET_BYTES} bytes"):
        MediaSettings(playback_secret=SecretStr("x" * (MIN_SECRET_BYTES - 1)))
    # Bytes, not characters: 11 three-byte characters are 33 bytes.
    MediaSettings(playback_secret=SecretStr("€" * 11))
