"""Stats and webhooks on one in-memory bus (as in all-in-one mode): concurrent views across a
threshold make exactly one `view.threshold` event and exactly one webhook delivery."""

from __future__ import annotations

import asyncio
import socket
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
from tests.support.assertions import eventually

from avc_common.events import Event
from avc_common.ids import new_id
from avc_common.runtime import Adapters
from avc_common.web import LifespanManager
from avc_stats.app import create_app as create_stats_app
from avc_stats.config import StatsSettings
from avc_webhooks.app import create_app as create_webhooks_app
from avc_webhooks.config import WebhookSettings

from .conftest import auth, make_settings, uploaded, viewed


async def _resolve(host: str, port: int) -> list[str]:
    if host == "hooks.example.test":
        return ["93.184.216.34"]
    raise socket.gaierror(socket.EAI_NONAME, "unknown")


async def test_concurrent_views_make_one_threshold_event_and_one_delivery(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    account = new_id("acct")
    async with AsyncExitStack() as stack:
        adapters = Adapters(settings)
        stack.push_async_callback(adapters.aclose)
        stats = create_stats_app(
            settings, adapters=adapters, stats_settings=StatsSettings(redrive_interval_seconds=3600)
        )
        webhooks = create_webhooks_app(
            settings, adapters=adapters, webhook_settings=WebhookSettings(), resolver=_resolve
        )
        await stack.enter_async_context(LifespanManager(stats))
        await stack.enter_async_context(LifespanManager(webhooks))
        hooks = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=webhooks), base_url="http://w")
        )
        stats_client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=stats), base_url="http://s")
        )
        headers = auth(account, plan="enterprise")
        created = await hooks.post(
            "/api/v1/webhooks",
            headers=headers,
            json={"url": "https://hooks.example.test/avc", "events": ["view.threshold"]},
        )
        assert created.status_code == 201, created.text
        webhook_id = created.json()["id"]
        response = await stats_client.put(
            "/api/v1/stats/thresholds", headers=headers, json={"views": [20]}
        )
        assert response.json() == {"views": [20]}

        bus = stats.state.bus
        assert bus is webhooks.state.bus
        seen: list[Event] = []

        async def record(event: Event) -> None:
            seen.append(event)

        await bus.subscribe("test.spy", ["view.threshold"], record)
        video = new_id("vid")
        await bus.publish(uploaded(video, account, 1))
        views = [viewed(video, account) for _ in range(50)]
        await asyncio.gather(*(bus.publish(e) for e in views))

        async def counted() -> bool:
            body = (await stats_client.get("/api/v1/stats", headers=headers)).json()
            return bool(body["total_views"] == 50)

        await eventually(counted)

        async def delivered() -> bool:
            page = await hooks.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=headers)
            return bool(page.json()["total"] >= 1)

        await eventually(delivered)
        await asyncio.sleep(0.3)  # anything extra would have arrived by now
        page = (
            await hooks.get(f"/api/v1/webhooks/{webhook_id}/deliveries", headers=headers)
        ).json()

    assert len(seen) == 1
    assert seen[0].data["threshold"] == 20
    assert seen[0].data["video_id"] == video
    assert page["total"] == 1
    [delivery] = page["data"]
    assert delivery["event_id"] == seen[0].id
    assert delivery["event_type"] == "view.threshold"
