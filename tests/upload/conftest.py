"""Fixtures for the upload service: the app in-process with a fake media service, a minted
internal token per account, an event recorder, and a real ffmpeg-made video file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from tests.support.assertions import internal_headers
from tests.support.s3 import S3Server, free_port, moto_server  # noqa: F401 - re-exported, fixture
from tests.support.videos import make_video

from avc_common.bus import Bus
from avc_common.config import Settings
from avc_common.events import Event
from avc_common.ids import new_token
from avc_common.internal_auth import (
    CurrentCaller,
)
from avc_common.objects import ObjectStore
from avc_common.runtime import Adapters
from avc_common.web import LifespanManager, create_service_app
from avc_upload.app import create_app
from avc_upload.config import UploadSettings

SECRET = "upload-tests-" + "s" * 40
ACCOUNT = "acct_" + "a" * 25
OTHER_ACCOUNT = "acct_" + "b" * 25
SEED_CONTENT_TYPE = "application/x-www-form-urlencoded"  # what curl -d / --data-binary send
MIB = 1024 * 1024


def metric_value(text: str, name: str, **labels: str) -> float:
    """Returns the value of one sample in a Prometheus text exposition (0 when absent)."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def upload_headers(
    account: str = ACCOUNT, *, content_type: str | None = SEED_CONTENT_TYPE, **extra: str
) -> dict[str, str]:
    """Returns the shared `internal_headers` for this suite's secret, with the Content-Type the
    seed's curl sends (None: no Content-Type)."""
    if content_type:
        extra = {"Content-Type": content_type, **extra}
    return internal_headers(account, secret=SECRET, **extra)


# -- fake media ----------------------------------------------------------------------------------


@dataclass
class FakeMedia:
    """Media's `register` as the contract says: idempotent on (account, upload_id). Failure
    knobs simulate a crash before it registers (`fail_before`) or after (`fail_after`)."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    videos: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    fail_before: int = 0
    fail_after: int = 0
    nonsense: int = 0
    delay: float = 0.0
    called: asyncio.Event | None = None

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/internal/v1/videos/register")
        async def register(request: Request, caller: CurrentCaller) -> JSONResponse:
            body = json.loads(await request.body())
            self.calls.append({"account_id": caller.account_id, **body})
            if self.called is not None:
                self.called.set()
            waited = 0.0
            while waited < self.delay:  # setting `delay` to 0 releases waiting calls
                await asyncio.sleep(0.05)
                waited += 0.05
            if self.fail_before:
                self.fail_before -= 1
                return JSONResponse({"error": "down", "code": "x", "request_id": None}, 503)
            key = (caller.account_id, body["upload_id"])
            status = 200
            if key not in self.videos:
                status = 201
                self.videos[key] = {
                    "video_id": body["video_id"],
                    "embed_token": new_token(),
                    "status": "processing",
                }
            if self.nonsense:
                self.nonsense -= 1
                return JSONResponse({"hello": "world"}, 200)
            if self.fail_after:
                self.fail_after -= 1
                return JSONResponse({"error": "crash", "code": "x", "request_id": None}, 500)
            return JSONResponse(self.videos[key], status)

        return router

    def app(self, settings: Settings) -> FastAPI:
        return create_service_app(service="media", settings=settings, routers=[self.router()])


# -- wrappers that fail once at a chosen point (a crash stand-in) ---------------------------------


class Crash(RuntimeError):
    """What the tests raise where the process would have died."""


class FlakyObjects:
    """Delegates to a real store; `crash_after[name] = n` raises Crash after the next n calls of
    that method did their work (the side effect is durable, the caller never hears of it)."""

    def __init__(self, inner: ObjectStore) -> None:
        self._inner = inner
        self.crash_after: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            result = await attr(*args, **kwargs)
            if self.crash_after.get(name):
                self.crash_after[name] -= 1
                raise Crash(f"crash after {name}")
            return result

        return call


class FlakyBus:
    """Delegates to a real bus; fails the next publish before (or after) it goes out."""

    def __init__(self, inner: Bus) -> None:
        self._inner = inner
        self.fail_before = 0
        self.fail_after = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def publish(self, event: Event) -> None:
        if self.fail_before:
            self.fail_before -= 1
            raise Crash("crash before publish")
        await self._inner.publish(event)
        if self.fail_after:
            self.fail_after -= 1
            raise Crash("crash after publish")


class FlakyAdapters(Adapters):
    """Adapters whose object store and bus are the flaky wrappers above."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.flaky_objects: FlakyObjects | None = None
        self.flaky_bus: FlakyBus | None = None

    async def objects(self) -> Any:
        if self.flaky_objects is None:
            self.flaky_objects = FlakyObjects(await super().objects())
        return self.flaky_objects

    async def bus(self) -> Any:
        if self.flaky_bus is None:
            self.flaky_bus = FlakyBus(await super().bus())
        return self.flaky_bus


# -- the harness ---------------------------------------------------------------------------------


@dataclass
class Harness:
    app: FastAPI
    client: httpx.AsyncClient
    media: FakeMedia
    events: list[Event]
    adapters: Adapters
    settings: Settings

    def headers(
        self, account: str = ACCOUNT, *, content_type: str | None = SEED_CONTENT_TYPE, **extra: str
    ) -> dict[str, str]:
        return upload_headers(account, content_type=content_type, **extra)

    @property
    def objects(self) -> ObjectStore:
        store: ObjectStore = self.app.state.objects
        return store

    async def init(self, size: int, *, filename: str = "course-lesson-1.mp4", **kw: Any) -> Any:
        """The seed's step 1, as curl -d sends it."""
        body = {"filename": filename, "size": size, "title": "Lesson 1", **kw}
        response = await self.client.post(
            "/api/v1/upload/init", content=json.dumps(body), headers=self.headers()
        )
        assert response.status_code == 201, response.text
        return response.json()

    async def chunk(
        self, upload_id: str, index: int, data: bytes, *, account: str = ACCOUNT, **headers: str
    ) -> httpx.Response:
        """The seed's step 2, as curl --data-binary sends it."""
        return await self.client.post(
            "/api/v1/upload/chunk",
            content=data,
            headers=self.headers(
                account, **{"X-Upload-ID": upload_id, "X-Chunk-Index": str(index), **headers}
            ),
        )

    async def complete(self, upload_id: str, *, account: str = ACCOUNT) -> httpx.Response:
        """The seed's step 3."""
        return await self.client.post(
            "/api/v1/upload/complete",
            content=json.dumps({"upload_id": upload_id}),
            headers=self.headers(account),
        )

    async def status(self, upload_id: str, *, account: str = ACCOUNT) -> httpx.Response:
        return await self.client.get(
            f"/api/v1/upload/{upload_id}", headers=self.headers(account, content_type=None)
        )

    async def send_chunks(
        self,
        upload_id: str,
        data: bytes,
        chunk_size: int,
        indices: list[int],
        *,
        parallel: int = 4,
        with_sha: bool = False,
    ) -> list[httpx.Response]:
        """Sends the given chunks, `parallel` at a time, in the order given."""
        gate = asyncio.Semaphore(parallel)

        async def one(index: int) -> httpx.Response:
            piece = data[index * chunk_size : (index + 1) * chunk_size]
            extra = {"X-Chunk-SHA256": hashlib.sha256(piece).hexdigest()} if with_sha else {}
            async with gate:
                response = await self.chunk(upload_id, index, piece, **extra)
            assert response.status_code == 200, response.text
            return response

        return list(await asyncio.gather(*(one(i) for i in indices)))

    async def stored_bytes(self, video_id: str) -> bytes:
        return await self.objects.read_bytes(f"sources/{video_id}/original")


def upload_settings(**overrides: Any) -> UploadSettings:
    # The sweeper runs once at start; tests call `sweep()` themselves after that.
    return UploadSettings(**{"sweep_interval_seconds": 3600, **overrides})


@pytest.fixture(autouse=True)
def plain_tracebacks() -> Iterator[None]:
    """The console renderer's rich tracebacks print every frame's locals, which takes seconds
    when those hold megabytes of chunk data (the crash tests log several 500s)."""
    import structlog

    saved = structlog.get_config()
    processors = [
        structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)
        if isinstance(p, structlog.dev.ConsoleRenderer)
        else p
        for p in saved["processors"]
    ]
    structlog.configure(processors=processors)
    yield
    structlog.configure(**saved)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", internal_secret=SecretStr(SECRET))


@pytest.fixture
def limits() -> UploadSettings:
    """Overridden by tests (parametrize indirectly or redefine) that need other limits."""
    return upload_settings()


@pytest.fixture
async def harness(settings: Settings, limits: UploadSettings) -> AsyncIterator[Harness]:
    async with running_harness(settings, limits) as made:
        yield made


class running_harness:  # noqa: N801 - used like a function
    """`async with running_harness(settings, limits, adapters=...) as h:`."""

    def __init__(
        self,
        settings: Settings,
        limits: UploadSettings,
        *,
        adapters: Adapters | None = None,
        media: FakeMedia | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.adapters = adapters if adapters is not None else Adapters(settings)
        self.media = media if media is not None else FakeMedia()
        self._stack: list[Any] = []

    async def __aenter__(self) -> Harness:
        self.adapters.service_apps["media"] = self.media.app(self.settings)
        app = create_app(self.settings, adapters=self.adapters, upload_settings=self.limits)
        self._lifespan = LifespanManager(app)
        await self._lifespan.__aenter__()
        events: list[Event] = []

        async def record(event: Event) -> None:
            events.append(event)

        bus: Bus = app.state.bus
        self._subscription = await bus.subscribe("upload-tests", ["video.uploaded"], record)
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://upload.test", timeout=60
        )
        return Harness(app, self._client, self.media, events, self.adapters, self.settings)

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._subscription.cancel()
        await self._lifespan.__aexit__(None, None, None)
        await self.adapters.aclose()


@pytest.fixture(scope="session")
def video_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ~23 MiB H.264/AAC MP4 (10 s, 1280x720 at 18 Mbit/s): five 5 MiB chunks."""
    path = tmp_path_factory.mktemp("videos") / "course-lesson-1.mp4"
    return make_video(path, seconds=10, width=1280, height=720, video_bitrate="18M")


@pytest.fixture(scope="session")
def video_bytes(video_file: Path) -> bytes:
    return video_file.read_bytes()


@pytest.fixture(scope="session")
def small_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("videos") / "small.mp4"
    return make_video(path, seconds=1, width=320, height=240)


@pytest.fixture
def rng() -> Iterator[random.Random]:
    return random.Random(20261126)


@pytest.fixture(scope="session")
def small_video_bytes(small_video: Path) -> bytes:
    return small_video.read_bytes()
