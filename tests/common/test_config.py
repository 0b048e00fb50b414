from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from avc_common.config import Settings
from avc_common.internal_auth import Caller, mint_internal_token
from avc_common.secrets import MIN_SECRET_BYTES


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


def test_service_urls_that_are_not_http_are_refused() -> None:
    # Declared once (the gateway's proxy and service-to-service calls both read them).
    with pytest.raises(ValueError, match="http"):
        Settings(upload_url="upload:8080")
    with pytest.raises(ValueError, match="query"):
        Settings(upload_url="http://upload:8080/?a=1")
    assert Settings(upload_url="http://upload:8080/").service_url("upload") == "http://upload:8080"


def test_service_urls_come_from_avc_service_url_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AVC_MEDIA_URL", "http://media:8080")
    assert Settings().service_url("media") == "http://media:8080"
    assert Settings().service_url("stats") == "http://127.0.0.1:8083"


def test_a_short_internal_secret_is_refused_at_start() -> None:
    Settings(internal_secret=SecretStr(""))  # unset: refused where a token is minted
    Settings(internal_secret=SecretStr("i" * MIN_SECRET_BYTES))
    with pytest.raises(ValidationError, match=f"at least {MIN_SECRET_BYTES} bytes"):
        Settings(internal_secret=SecretStr("i" * (MIN_SECRET_BYTES - 1)))
    with pytest.raises(
        ValueError, match=f"AVC_INTERNAL_SECRET must be at least {MIN_SECRET_BYTES}"
    ):
        mint_internal_token(Caller(account_id="acc_1", plan="free"), secret="short")
