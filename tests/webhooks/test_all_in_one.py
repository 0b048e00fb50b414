"""All-in-one mode: the stats and webhooks consumers and the webhooks worker run in-process on
the shared bus and database, so a view crossing a threshold reaches a real HTTPS receiver."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trustme
from tests.support.assertions import eventually

from avc_common.config import Settings
from avc_common.events import Event, VideoViewed
from avc_common.ids import new_id
from avc_common.web import LifespanManager
from avcaption.allinone import create_all_in_one_app

from .conftest import SECRET, Receiver, auth, verify_standard_webhook


async def test_view_threshold_reaches_the_receiver(
    tmp_path: Path, ca: trustme.CA, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # All-in-one builds the components from the environment, like `avcaption serve` does.
    monkeypatch.setenv("AVC_WEBHOOKS_CA_FILE", str(ca_file))
    monkeypatch.setenv("AVC_WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    monkeypatch.setenv("AVC_WEBHOOKS_POLL_INTERVAL_SECONDS", "0.05")
    receiver = await Receiver(ca, cert_host="localhost").start()
    app = create_all_in_one_app(Settings(data_dir=tmp_path, internal_secret=SECRET))
    services = app.front.state.service_apps
    assert {"stats", "webhooks", "webhooks-worker"} <= set(services)
    account = new_id("acct")
    headers = auth(account)
    try:
        async with (
            LifespanManager(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=services["webhooks"]), base_url="http://w"
            ) as hooks,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=services["stats"]), base_url="http://s"
            ) as stats,
        ):
            created = await hooks.post(
                "/api/v1/webhooks",
                headers=headers,
                json={"url": receiver.url(host="localhost"), "events": ["view.threshold"]},
            )
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            await stats.put("/api/v1/stats/thresholds", headers=headers, json={"views": [2]})
            bus = services["stats"].state.bus
            video = new_id("vid")
            for _ in range(3):
                await bus.publish(Event.of(VideoViewed(video_id=video), account_id=account))

            async def delivered() -> bool:
                return len(receiver.requests) >= 1

            await eventually(delivered)
    finally:
        await receiver.stop()
    [request] = receiver.requests
    verify_standard_webhook(secret, request.headers, request.body)
    assert b'"type":"view.threshold"' in request.body
    assert receiver.sni == ["localhost"]
