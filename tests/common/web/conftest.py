from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from avc_common.config import Settings
from avc_common.logging import configure_logging
from avc_common.web import LifespanManager, create_service_app


class LogLines:
    """What the configured handler wrote, one parsed JSON object per line."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def raw(self) -> str:
        return self.stream.getvalue()

    def all(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.raw.splitlines() if line.strip()]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.all() if line.get("event") == event]


@pytest.fixture(autouse=True)
def logs() -> Iterator[LogLines]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    configure_logging(service="test-default", level="DEBUG", json=True, stream=stream)
    yield LogLines(stream)
    # Leave the root logger as other test folders expect it.
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def settings(tmp_path: Any) -> Settings:
    return Settings(data_dir=tmp_path)


@pytest.fixture
def make_app(settings: Settings) -> Callable[..., FastAPI]:
    def make(**kwargs: Any) -> FastAPI:
        kwargs.setdefault("service", "svc")
        return create_service_app(settings=settings, **kwargs)

    return make


ClientFactory = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def client_for() -> ClientFactory:
    @asynccontextmanager
    async def open_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
        transport = httpx.ASGITransport(app=app)
        async with (
            LifespanManager(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            yield client

    return open_client
