from __future__ import annotations

from pathlib import Path

import pytest

from avc_common.config import Settings


def test_embedded_defaults_live_under_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.effective_database_url == f"sqlite://{tmp_path}"
    assert settings.effective_storage_url == f"file://{tmp_path}/objects"
    assert settings.effective_bus_url == "memory://"
    assert settings.effective_ratelimit_url == "memory://"


def test_urls_come_from_avc_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVC_DATABASE_URL", "mongodb://db:27017")
    monkeypatch.setenv("AVC_BUS_URL", "amqp://guest:guest@mq:5672/")
    monkeypatch.setenv("AVC_PORT", "9000")
    settings = Settings()
    assert settings.effective_database_url == "mongodb://db:27017"
    assert settings.effective_bus_url == "amqp://guest:guest@mq:5672/"
    assert settings.port == 9000


def test_invalid_port_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVC_PORT", "70000")
    with pytest.raises(ValueError, match="port"):
        Settings()
