from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from fastapi import FastAPI

from avc_common.web import LifespanError, LifespanManager

MakeApp = Callable[..., FastAPI]


async def test_runs_startup_and_shutdown_in_order(make_app: MakeApp) -> None:
    events: list[str] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        events.append("start")
        app.state.client = "built"
        yield
        events.append("stop")

    app = make_app(lifespan=lifespan)
    async with LifespanManager(app):
        assert events == ["start"]
        assert app.state.client == "built"
    assert events == ["start", "stop"]


async def connect() -> None:
    raise RuntimeError("cannot reach the broker")


async def test_a_failing_startup_raises(make_app: MakeApp) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await connect()
        yield

    with pytest.raises(LifespanError, match="cannot reach the broker"):
        async with LifespanManager(make_app(lifespan=lifespan)):
            pass


async def test_a_failing_shutdown_raises(make_app: MakeApp) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        raise RuntimeError("flush failed")

    with pytest.raises(LifespanError, match="flush failed"):
        async with LifespanManager(make_app(lifespan=lifespan)):
            pass


async def test_a_startup_that_hangs_times_out(make_app: MakeApp) -> None:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.sleep(30)
        yield

    with pytest.raises(LifespanError, match="did not finish"):
        async with LifespanManager(make_app(lifespan=lifespan), startup_timeout=0.05):
            pass
