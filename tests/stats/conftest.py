"""The stats app in-process (httpx.ASGITransport + LifespanManager) on the embedded adapters,
with helpers to publish video events on its bus and wait for them to be counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.support.assertions import eventually, internal_headers

from avc_common.bus import Bus
from avc_common.config import Settings
from avc_common.events import (
    ErrorInfo,
    Event,
    EventData,
    RenditionInfo,
    VideoDeleted,
    VideoEncoded,
    VideoFailed,
    VideoUploaded,
    VideoViewed,
)
from avc_common.ids import new_id
from avc_common.runtime import Adapters
from avc_common.web import LifespanManager
from avc_stats.app import create_app
from avc_stats.config import StatsSettings
from avc_stats.service import StatsService

SECRET = "s" * 40


def auth(account_id: str, plan: str = "starter") -> dict[str, str]:
    """Returns the headers the gateway would add for `account_id`."""
    return internal_headers(account_id, secret=SECRET, plan=plan)


def uploaded(video_id: str, account_id: str, size: int) -> Event:
    return Event.of(
        VideoUploaded(video_id=video_id, filename="a.mp4", size_bytes=size, source_key="k"),
        account_id=account_id,
    )


def encoded(video_id: str, account_id: str, renditions_bytes: int) -> Event:
    payload = VideoEncoded(
        video_id=video_id,
        duration_seconds=2.0,
        width=320,
        height=240,
        renditions=[RenditionInfo(name="240p", width=320, height=240, bitrate_kbps=400)],
        renditions_bytes=renditions_bytes,
    )
    return Event.of(payload, account_id=account_id)


def failed(video_id: str, account_id: str) -> Event:
    payload = VideoFailed(video_id=video_id, error=ErrorInfo(code="bad_media", message="no"))
    return Event.of(payload, account_id=account_id)


def deleted(video_id: str, account_id: str, *, bytes_freed: int = 0) -> Event:
    payload = VideoDeleted(video_id=video_id, status="ready", bytes_freed=bytes_freed)
    return Event.of(payload, account_id=account_id)


def viewed(video_id: str, account_id: str) -> Event:
    return Event.of(VideoViewed(video_id=video_id), account_id=account_id)


def event_of(payload: EventData, account_id: str) -> Event:
    return Event.of(payload, account_id=account_id)


@dataclass
class StatsHarness:
    app: FastAPI
    client: httpx.AsyncClient
    account_id: str

    @property
    def bus(self) -> Bus:
        bus: Bus = self.app.state.bus
        return bus

    @property
    def service(self) -> StatsService:
        service: StatsService = self.app.state.stats_service
        return service

    async def stats(self, account_id: str | None = None) -> dict[str, Any]:
        response = await self.client.get(
            "/api/v1/stats", headers=auth(account_id or self.account_id)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def publish(self, *events: Event) -> None:
        for event in events:
            await self.bus.publish(event)

    async def settle(self, *events: Event) -> None:
        """Waits until every event is finished in the inbox."""
        inbox = self.app.state.documents.collection("inbox")

        async def done() -> bool:
            ids = [e.id for e in events]
            finished: int = await inbox.count({"_id": {"$in": ids}, "state": "done"})
            return finished == len(set(ids))

        await eventually(done)

    async def publish_and_settle(self, *events: Event) -> None:
        await self.publish(*events)
        await self.settle(*events)


def make_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, internal_secret=SECRET)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def stats_settings() -> StatsSettings:
    return StatsSettings(redrive_interval_seconds=3600)


@pytest.fixture
async def harness(settings: Settings, stats_settings: StatsSettings) -> AsyncIterator[StatsHarness]:
    async with AsyncExitStack() as stack:
        adapters = Adapters(settings)
        stack.push_async_callback(adapters.aclose)
        app = create_app(settings, adapters=adapters, stats_settings=stats_settings)
        await stack.enter_async_context(LifespanManager(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://stats")
        )
        yield StatsHarness(app=app, client=client, account_id=new_id("acct"))
