from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.logging import configure_logging
from avc_common.runtime import Adapters
from avc_common.web import LifespanError, LifespanManager, add_readiness_check
from avcaption.allinone import AllInOneApp, create_all_in_one_app
from avcaption.components import ALL, COMPONENTS, FRONT, embedded_components

SERVICES = ["upload", "media", "stats", "webhooks"]
# Services first (in this order), then any workers later issues register.
EMBEDDED = [c.name for c in embedded_components()]


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    out = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging(service=ALL, stream=out)
    yield out
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


def test_registry_lists_every_component() -> None:
    assert list(COMPONENTS)[:2] == [ALL, FRONT]
    assert EMBEDDED[: len(SERVICES)] == SERVICES
    assert set(COMPONENTS) == {ALL, FRONT, *EMBEDDED}


@pytest.mark.parametrize("name", [FRONT, *EMBEDDED])
def test_each_component_builds_its_app(name: str, settings: Settings) -> None:
    app = COMPONENTS[name].create(settings)
    assert isinstance(app, FastAPI)
    assert app.state.service == name


async def test_all_in_one_starts_every_component_and_serves_the_gateway(
    settings: Settings, log_output: io.StringIO
) -> None:
    app = create_all_in_one_app(settings)
    assert isinstance(app.front, FastAPI)
    assert list(app.front.state.service_apps) == EMBEDDED

    async with serving(app) as client:
        ready = await client.get("/readyz")
        missing = await client.get("/nope", headers={"X-Request-ID": "all-1"})
        # What the in-process transport will do: call an embedded app directly.
        media = httpx.ASGITransport(app=app.front.state.service_apps["media"])
        async with httpx.AsyncClient(transport=media, base_url="http://media") as inner:
            await inner.get("/healthz")
        metrics = (await client.get("/metrics")).text

    assert ready.status_code == 200
    assert ready.json()["checks"] == dict.fromkeys(["documents", "ratelimiter", *EMBEDDED], "ok")
    assert missing.json() == {"error": "Not found.", "code": "not_found", "request_id": "all-1"}
    assert 'service="gateway",status="404"' in metrics
    assert 'route="/healthz",service="media",status="200"' in metrics

    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    started = [line["service"] for line in lines if line["event"] == "component_started"]
    stopped = [line["service"] for line in lines if line["event"] == "component_stopped"]
    assert started == [*EMBEDDED, FRONT]
    assert stopped == [FRONT, *reversed(EMBEDDED)]


async def test_gateway_is_not_ready_while_an_embedded_component_is_not(
    settings: Settings,
) -> None:
    async def broken() -> None:
        raise ConnectionError("no broker")

    app = create_all_in_one_app(settings)
    add_readiness_check(app.front.state.service_apps["stats"], "probe", broken)
    async with serving(app) as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["details"]["checks"]["stats"] == "failed"


async def test_a_component_failing_to_start_fails_startup_and_stops_the_others(
    settings: Settings,
) -> None:
    events: list[str] = []

    def component(name: str, *, fail: bool = False) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI) -> AsyncIterator[None]:
            if fail:
                raise RuntimeError(f"{name} cannot start")
            events.append(f"start {name}")
            yield
            events.append(f"stop {name}")

        return FastAPI(lifespan=lifespan)

    app = AllInOneApp(
        component("gateway"),
        {"upload": component("upload"), "media": component("media", fail=True)},
        Adapters(settings),
    )
    with pytest.raises(LifespanError, match="media cannot start"):
        async with LifespanManager(app):
            pass
    assert events == ["start upload", "stop upload"]
