"""Webhooks settings: `AVC_WEBHOOKS_*` variables; the old `AVC_WEBHOOK_*` names still read (with
a warning) for one release."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from avc_webhooks.config import RENAMED_ENV, WebhookSettings

_PRINT_SETTINGS = (
    "import json; from avc_webhooks.config import WebhookSettings; s = WebhookSettings(); "
    "print(json.dumps({'schedule': s.retry_schedule, 'concurrency': s.concurrency, "
    "'insecure': s.allow_insecure}))"
)


def _settings_in_a_new_process(env: dict[str, str]) -> tuple[dict[str, object], str]:
    """Returns the settings a fresh process reads from `env` (no other AVC_ variables) and what
    it logged."""
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


def test_every_setting_has_its_old_name() -> None:
    assert set(RENAMED_ENV.values()) == set(WebhookSettings.model_fields)
    assert all(old.startswith("AVC_WEBHOOK_") for old in RENAMED_ENV)


def test_new_names_are_read_without_a_warning() -> None:
    values, logged = _settings_in_a_new_process(
        {"AVC_WEBHOOKS_RETRY_SCHEDULE": "1,2", "AVC_WEBHOOKS_CONCURRENCY": "3"}
    )
    assert values == {"schedule": [1.0, 2.0], "concurrency": 3, "insecure": False}
    assert "deprecated_env" not in logged


def test_old_names_still_work_with_a_warning() -> None:
    values, logged = _settings_in_a_new_process(
        {"AVC_WEBHOOK_RETRY_SCHEDULE": "4,5", "AVC_WEBHOOK_ALLOW_INSECURE": "1"}
    )
    assert values == {"schedule": [4.0, 5.0], "concurrency": 8, "insecure": True}
    assert "deprecated_env" in logged
    assert "AVC_WEBHOOKS_RETRY_SCHEDULE" in logged


def test_the_new_name_wins_over_the_old_one() -> None:
    values, logged = _settings_in_a_new_process(
        {"AVC_WEBHOOKS_CONCURRENCY": "3", "AVC_WEBHOOK_CONCURRENCY": "5"}
    )
    assert values["concurrency"] == 3
    assert "deprecated_env_ignored" in logged


def test_an_old_name_with_a_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVC_WEBHOOK_CONCURRENCY", "0")
    with pytest.raises(ValueError, match="concurrency"):
        WebhookSettings()
