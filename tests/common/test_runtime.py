"""Adapters are opened once per process and closed by whoever opened them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.web import LifespanManager, create_service_app


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


async def test_each_adapter_is_opened_once_and_shared(settings: Settings, tmp_path: Path) -> None:
    adapters = Adapters(settings)
    try:
        assert await adapters.bus() is await adapters.bus()
        assert await adapters.objects() is await adapters.objects()
        assert await adapters.documents("upload") is await adapters.documents("upload")
        assert await adapters.documents("upload") is not await adapters.documents("media")
        await (await adapters.documents("media")).collection("c").insert_one({"_id": "x"})
    finally:
        await adapters.aclose()
    # One SQLite file per service, under the data dir.
    assert (tmp_path / "media.db").exists()
    assert (tmp_path / "upload.db").exists()


async def test_closed_adapters_reopen_on_next_use(settings: Settings) -> None:
    adapters = Adapters(settings)
    first = await adapters.bus()
    await adapters.aclose()
    with pytest.raises(Exception):  # noqa: B017 - a closed bus refuses pings
        await first.ping()
    second = await adapters.bus()
    await second.ping()
    await adapters.aclose()


def _app(settings: Settings, adapters: Adapters | None) -> FastAPI:
    return create_service_app(
        service="stats",
        settings=settings,
        lifespan=adapters_lifespan(
            service="stats", settings=settings, adapters=adapters, needs=("documents", "bus")
        ),
    )


async def test_lifespan_puts_adapters_on_state_and_checks_them(settings: Settings) -> None:
    app = _app(settings, None)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            ready = await client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"documents": "ok", "bus": "ok"}
        bus = app.state.bus
        await bus.ping()
    # The app opened its own adapters, so it closed them.
    with pytest.raises(Exception):  # noqa: B017
        await bus.ping()


async def test_lifespan_leaves_shared_adapters_open(settings: Settings) -> None:
    adapters = Adapters(settings)
    app = _app(settings, adapters)
    async with LifespanManager(app):
        assert app.state.bus is await adapters.bus()
    await (await adapters.bus()).ping()
    await adapters.aclose()


def test_unknown_adapter_name_is_refused(settings: Settings) -> None:
    with pytest.raises(ValueError, match="unknown adapters"):
        adapters_lifespan(
            service="stats",
            settings=settings,
            adapters=None,
            needs=("documents", "cache"),  # type: ignore[arg-type]
        )
