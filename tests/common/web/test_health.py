from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from avc_common.web import add_readiness_check

MakeApp = Callable[..., FastAPI]
ClientFor = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


async def ok() -> None:
    return None


async def broken() -> None:
    raise ConnectionError("mongodb://admin:hunter2@db:27017 refused")


async def hangs() -> None:
    await asyncio.sleep(30)


async def test_healthz_is_ok(make_app: MakeApp, client_for: ClientFor) -> None:
    async with client_for(make_app(readiness={"db": broken})) as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_without_checks_is_ready(make_app: MakeApp, client_for: ClientFor) -> None:
    async with client_for(make_app()) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {}}


async def test_readyz_runs_every_check(make_app: MakeApp, client_for: ClientFor) -> None:
    async with client_for(make_app(readiness={"db": ok, "bus": ok})) as client:
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"db": "ok", "bus": "ok"}}


async def test_readyz_names_failing_checks_without_their_errors(
    make_app: MakeApp, client_for: ClientFor, logs: Any
) -> None:
    async with client_for(make_app(readiness={"db": broken, "bus": ok})) as client:
        response = await client.get("/readyz", headers={"X-Request-ID": "probe-1"})
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "service_unavailable"
    assert body["request_id"] == "probe-1"
    assert "db" in body["error"]
    assert body["details"] == {"checks": {"db": "failed", "bus": "ok"}}
    assert "hunter2" not in response.text
    (line,) = logs.events("readiness_check_failed")
    assert line["check"] == "db"
    assert "ConnectionError" in line["exception"]


async def test_a_hanging_check_times_out(make_app: MakeApp, client_for: ClientFor) -> None:
    app = make_app(readiness={"bus": ok})
    add_readiness_check(app, "slow", hangs, timeout=0.05)
    async with client_for(app) as client:
        started = time.monotonic()
        response = await client.get("/readyz")
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.json()["details"]["checks"] == {"bus": "ok", "slow": "timeout"}


async def test_a_lifespan_registers_checks_for_what_it_built(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = object()
        add_readiness_check(app, "documents", ok)
        yield

    async with client_for(make_app(lifespan=lifespan)) as client:
        response = await client.get("/readyz")
    assert response.json()["checks"] == {"documents": "ok"}
