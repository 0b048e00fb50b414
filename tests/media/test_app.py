from __future__ import annotations

from pathlib import Path

import httpx

from avc_common.config import Settings
from avc_common.web import LifespanManager
from avc_media.app import create_app


async def test_the_worker_app_has_health_readiness_and_metrics(tmp_path: Path) -> None:
    from avc_media.worker import create_worker_app

    app = create_worker_app(Settings(data_dir=tmp_path))
    transport = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        health = await client.get("/healthz")
        ready = await client.get("/readyz")
        metrics = await client.get("/metrics")
    assert app.state.service == "media-worker"
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert set(ready.json()["checks"]) == {
        "documents",
        "objects",
        "bus",
        "ffmpeg",
        "consumer:media.encode",
    }
    assert "avc_media_encodes_in_progress" in metrics.text


async def test_media_generates_and_keeps_its_playback_secret(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    async with LifespanManager(app):
        pass
    secret_file = tmp_path / "secrets" / "media.json"
    assert secret_file.is_file()
    assert oct(secret_file.stat().st_mode & 0o777) == "0o600"
    first = secret_file.read_text()
    async with LifespanManager(create_app(Settings(data_dir=tmp_path))):
        pass
    assert secret_file.read_text() == first
