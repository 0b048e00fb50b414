from __future__ import annotations

from pathlib import Path

import httpx

from avc_common.config import Settings
from avc_common.web import LifespanManager


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
