"""The media API and (when a test asks for it) the encode worker, in-process on the embedded
adapters (SQLite, local objects, in-memory bus), sharing one set of adapters as in all-in-one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from tests.support.assertions import eventually, internal_headers

from avc_common.config import Settings
from avc_common.events import Event, VideoUploaded
from avc_common.ids import new_id
from avc_common.runtime import Adapters
from avc_common.web import LifespanManager
from avc_media.app import create_app
from avc_media.config import MediaSettings
from avc_media.worker import create_worker_app

INTERNAL_SECRET = "i" * 48
PLAYBACK_SECRET = "p" * 48


def caller_headers(
    account_id: str, *, plan: str = "enterprise", request_id: str | None = None
) -> dict[str, str]:
    """What the gateway adds when it forwards a call of `account_id`."""
    return internal_headers(account_id, secret=INTERNAL_SECRET, plan=plan, request_id=request_id)


def media_settings(work: Path, **overrides: Any) -> MediaSettings:
    values: dict[str, Any] = {
        "playback_secret": SecretStr(PLAYBACK_SECRET),
        "x264_preset": "ultrafast",
        "work_dir": work,
        "lease_seconds": 6.0,
        "redrive_interval_seconds": 3600.0,
        "redrive_after_seconds": 3600.0,
    }
    unknown = set(overrides) - set(MediaSettings.model_fields)
    assert not unknown, f"not media settings: {unknown}"  # extra="ignore" would drop them
    values.update(overrides)
    return MediaSettings(**values)


@dataclass
class Media:
    client: httpx.AsyncClient
    adapters: Adapters
    app: Any
    worker_app: Any | None
    events: list[Event] = field(default_factory=list)

    @property
    def objects(self) -> Any:
        return self.app.state.objects

    @property
    def bus(self) -> Any:
        return self.app.state.bus

    async def register(
        self,
        account_id: str,
        *,
        video_id: str | None = None,
        upload_id: str | None = None,
        filename: str = "clip.mp4",
        title: str | None = "A clip",
        size_bytes: int = 1000,
        sha256: str | None = "0" * 64,
    ) -> httpx.Response:
        video_id = video_id or new_id("vid")
        return await self.client.post(
            "/internal/v1/videos/register",
            headers=caller_headers(account_id),
            json={
                "video_id": video_id,
                "upload_id": upload_id or new_id("upl"),
                "filename": filename,
                "title": title,
                "size_bytes": size_bytes,
                "sha256": sha256,
                "source_key": f"sources/{video_id}/original",
            },
        )

    async def upload(self, account_id: str, path: Path, **kwargs: Any) -> str:
        """Does what the upload service does: stores the source, registers, publishes."""
        video_id = new_id("vid")
        data = await asyncio.to_thread(path.read_bytes)
        await self.objects.put(f"sources/{video_id}/original", data, size=len(data))
        response = await self.register(
            account_id, video_id=video_id, size_bytes=len(data), filename=path.name, **kwargs
        )
        assert response.status_code == 201, response.text
        await self.bus.publish(
            Event.of(
                VideoUploaded(
                    video_id=video_id,
                    upload_id="upl_x",
                    filename=path.name,
                    title="A clip",
                    size_bytes=len(data),
                    source_key=f"sources/{video_id}/original",
                ),
                account_id=account_id,
            )
        )
        return video_id

    async def video(self, account_id: str, video_id: str) -> dict[str, Any]:
        response = await self.client.get(
            f"/api/v1/videos/{video_id}", headers=caller_headers(account_id)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def wait_status(
        self, account_id: str, video_id: str, *, within: float = 120.0
    ) -> dict[str, Any]:
        """Returns the video once it is no longer processing."""
        latest: dict[str, Any] = {}

        async def done() -> bool:
            latest.update(await self.video(account_id, video_id))
            return bool(latest["status"] != "processing")

        await eventually(done, within=within, interval=0.1)
        return latest

    def of_type(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", internal_secret=SecretStr(INTERNAL_SECRET), bus_url="memory://"
    )


@pytest.fixture
def make_media(settings: Settings, tmp_path: Path) -> Callable[..., Any]:
    """`async with make_media(worker=True, **media_overrides) as media:`"""

    def make(*, worker: bool = False, **overrides: Any) -> Any:
        return _MediaStack(settings, media_settings(tmp_path / "work", **overrides), worker)

    return make


class _MediaStack:
    def __init__(
        self, settings: Settings, media: MediaSettings, worker: bool, *, record: bool = True
    ) -> None:
        self.settings = settings
        self.media = media
        self.worker = worker
        self.record = record
        self.stack = AsyncExitStack()

    async def __aenter__(self) -> Media:
        adapters = Adapters(self.settings)
        self.stack.push_async_callback(adapters.aclose)
        app = create_app(self.settings, adapters=adapters, media_settings=self.media)
        worker_app = None
        if self.worker:
            worker_app = create_worker_app(
                self.settings, adapters=adapters, media_settings=self.media
            )
            await self.stack.enter_async_context(LifespanManager(worker_app))
        await self.stack.enter_async_context(LifespanManager(app))
        client = await self.stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://media")
        )
        media = Media(client=client, adapters=adapters, app=app, worker_app=worker_app)
        bus = await adapters.bus()

        async def record(event: Event) -> None:
            media.events.append(event)

        if self.record:
            await bus.subscribe("test.recorder", ["#"], record)
        return media

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.aclose()


@pytest.fixture
async def media(make_media: Callable[..., Any]) -> AsyncIterator[Media]:
    async with make_media() as m:
        yield m


MASTER = (
    "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-STREAM-INF:BANDWIDTH=900000,RESOLUTION=640x360,"
    'CODECS="avc1.64001e,mp4a.40.2"\n360p/index.m3u8\n'
)
MEDIA_PLAYLIST = (
    "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:6\n#EXT-X-PLAYLIST-TYPE:VOD\n"
    "#EXTINF:6.0,\nseg_00000.ts\n#EXT-X-ENDLIST\n"
)
SEGMENT = bytes(range(256)) * 40  # 10240 bytes


async def fake_ready(media: Media, account_id: str, **fields: Any) -> dict[str, Any]:
    """Registers a video and makes it `ready` with small stand-in files (no encode): for the
    tests of access rules, which need a playable video but not a real one."""
    response = await media.register(account_id)
    assert response.status_code == 201, response.text
    video_id = response.json()["video_id"]
    prefix = f"videos/{video_id}"
    await media.objects.put(f"{prefix}/master.m3u8", MASTER.encode())
    await media.objects.put(f"{prefix}/360p/index.m3u8", MEDIA_PLAYLIST.encode())
    await media.objects.put(f"{prefix}/360p/seg_00000.ts", SEGMENT)
    await media.objects.put(f"{prefix}/thumbnail.jpg", b"\xff\xd8\xff\xe0fakejpeg")
    await media.app.state.documents.collection("videos").update_one(
        {"_id": video_id},
        {
            "$set": {
                "status": "ready",
                "duration_seconds": 6.0,
                "width": 640,
                "height": 360,
                "renditions": [{"name": "360p", "width": 640, "height": 360, "bitrate_kbps": 900}],
                "renditions_bytes": len(SEGMENT) + len(MASTER) + len(MEDIA_PLAYLIST) + 12,
                **fields,
            }
        },
    )
    return await media.video(account_id, video_id)
