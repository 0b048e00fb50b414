"""Every service's `create_app()`: health, readiness, metrics and the error shape are in place."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.web import LifespanManager

SERVICES = ["gateway", "upload", "media", "stats", "webhooks"]


def _factory(service: str) -> Callable[..., FastAPI]:
    factory: Callable[..., FastAPI] = importlib.import_module(f"avc_{service}.app").create_app
    return factory


@pytest.mark.parametrize("service", SERVICES)
async def test_health_metrics_and_error_shape(service: str, tmp_path: Path) -> None:
    app = _factory(service)(Settings(data_dir=tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        missing = await client.get("/api/v1/no-such-route", headers={"X-Request-ID": "t-1"})
        metrics = await client.get("/metrics")

    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert missing.status_code == 404
    assert missing.headers["x-request-id"] == "t-1"
    assert missing.json() == {"error": "Not found.", "code": "not_found", "request_id": "t-1"}
    assert metrics.status_code == 200
    assert f'service="{service}",status="404"' in metrics.text


@pytest.mark.parametrize("service", SERVICES)
def test_settings_come_from_the_environment(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AVC_DATA_DIR", str(tmp_path))
    app = _factory(service)()
    assert app.state.service == service
    assert app.state.settings.data_dir == tmp_path
