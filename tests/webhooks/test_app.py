from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from avc_common.config import Settings
from avc_common.web import LifespanManager
from avc_webhooks.app import create_app

SERVICE = "webhooks"


async def test_health_metrics_and_error_shape(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
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
    assert f'service="{SERVICE}",status="404"' in metrics.text


def test_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AVC_DATA_DIR", str(tmp_path))
    app = create_app()
    assert app.state.service == SERVICE
    assert app.state.settings.data_dir == tmp_path


def test_the_worker_is_a_component_embedded_in_all_in_one(tmp_path: Path) -> None:
    from avcaption.components import COMPONENTS, embedded_components

    component = COMPONENTS["webhooks-worker"]
    assert component in embedded_components()
    app = component.create(Settings(data_dir=tmp_path))
    assert app.state.service == "webhooks-worker"  # type: ignore[attr-defined]


async def test_worker_health_and_metrics(tmp_path: Path) -> None:
    from avc_webhooks.worker import create_worker_app

    app = create_worker_app(Settings(data_dir=tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"documents": "ok"}
    assert "avc_webhook_attempts_total" in metrics.text
