"""The upload service as a real process (`avcaption serve --target upload`), killed with
SIGKILL in the middle of a chunk and in the middle of `complete` (while media is registering
the video), restarted on the same data: the client's retries end with the same video id and a
byte-identical file. Media is a fake HTTP server in this test process."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from tests.upload.conftest import (
    ACCOUNT,
    MIB,
    SECRET,
    FakeMedia,
    free_port,
    sha256_of,
    upload_headers,
)

from avc_common.config import Settings

CHUNK = 5 * MIB

pytestmark = pytest.mark.slow


def avcaption() -> list[str]:
    script = Path(sys.executable).with_name("avcaption")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avcaption"]


class UploadProcess:
    """One `avcaption serve --target upload` process on a fixed port and data dir."""

    def __init__(self, data_dir: Path, port: int, media_url: str, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
        env.update(
            PYTHONUNBUFFERED="1",
            AVC_INTERNAL_SECRET=SECRET,
            AVC_MEDIA_URL=media_url,
            AVC_LOG_JSON="true",
        )
        args = ["serve", "--target", "upload", "--host", "127.0.0.1", "--port", str(port)]
        args += ["--data-dir", str(data_dir)]
        self.log = log
        self._sink = log.open("ab")
        self.proc = subprocess.Popen(
            [*avcaption(), *args], stdout=self._sink, stderr=subprocess.STDOUT, env=env
        )
        self.base = f"http://127.0.0.1:{port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"exited early:\n{self.log.read_text()}"
            try:
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"not ready in 30 s:\n{self.log.read_text()}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._sink.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._sink.close()


@pytest.fixture
def media_server() -> Iterator[tuple[FakeMedia, str]]:
    """The fake media app served over HTTP from a thread of this process."""
    media = FakeMedia()
    settings = Settings(internal_secret=SecretStr(SECRET))
    port = free_port()
    config = uvicorn.Config(
        media.app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "fake media did not start"
        time.sleep(0.05)
    try:
        yield media, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


async def test_killed_mid_chunk_and_mid_complete_then_retried(
    tmp_path: Path, video_bytes: bytes, media_server: tuple[FakeMedia, str]
) -> None:
    media, media_url = media_server
    data = video_bytes
    data_dir, port, log = tmp_path / "data", free_port(), tmp_path / "upload.log"

    first = UploadProcess(data_dir, port, media_url, log)
    try:
        first.wait_ready()
        async with httpx.AsyncClient(base_url=first.base, timeout=30) as client:
            init = (
                await client.post(
                    "/api/v1/upload/init",
                    content=json.dumps({"filename": "lesson.mp4", "size": len(data)}),
                    headers=upload_headers(),
                )
            ).json()
            upload_id, total = init["upload_id"], init["total_chunks"]

            async def send(index: int) -> httpx.Response:
                return await client.post(
                    "/api/v1/upload/chunk",
                    content=data[index * CHUNK : (index + 1) * CHUNK],
                    headers=upload_headers(
                        **{"X-Upload-ID": upload_id, "X-Chunk-Index": str(index)}
                    ),
                )

            assert (await send(0)).status_code == 200
            assert (await send(2)).status_code == 200

            # Chunk 1 is half sent when the process dies.
            half_sent, release = asyncio.Event(), asyncio.Event()

            async def slow_body() -> AsyncIterator[bytes]:
                yield data[CHUNK : CHUNK + CHUNK // 2]
                half_sent.set()
                await release.wait()
                yield data[CHUNK + CHUNK // 2 : 2 * CHUNK]

            in_flight = asyncio.create_task(
                client.post(
                    "/api/v1/upload/chunk",
                    content=slow_body(),
                    headers=upload_headers(**{"X-Upload-ID": upload_id, "X-Chunk-Index": "1"}),
                )
            )
            await half_sent.wait()
            await asyncio.sleep(0.3)
            first.kill()
            release.set()
            with pytest.raises(httpx.TransportError):
                await in_flight
    finally:
        first.stop()

    second = UploadProcess(data_dir, port, media_url, log)
    try:
        second.wait_ready()
        async with httpx.AsyncClient(base_url=second.base, timeout=30) as client:
            status = (
                await client.get(
                    f"/api/v1/upload/{upload_id}", headers=upload_headers(content_type=None)
                )
            ).json()
            assert status["received"] == [0, 2]
            assert status["missing"] == [i for i in range(total) if i not in (0, 2)]
            for index in status["missing"]:
                response = await client.post(
                    "/api/v1/upload/chunk",
                    content=data[index * CHUNK : (index + 1) * CHUNK],
                    headers=upload_headers(
                        **{"X-Upload-ID": upload_id, "X-Chunk-Index": str(index)}
                    ),
                )
                assert response.status_code == 200, response.text

            # complete: the object is assembled, media is registering when the process dies.
            media.delay = 60
            completing = asyncio.create_task(
                client.post(
                    "/api/v1/upload/complete",
                    content=json.dumps({"upload_id": upload_id}),
                    headers=upload_headers(),
                )
            )
            deadline = time.monotonic() + 20
            while not media.calls:
                assert time.monotonic() < deadline, "media was never called"
                await asyncio.sleep(0.05)
            second.kill()
            with pytest.raises(httpx.TransportError):
                await completing
    finally:
        second.stop()

    video_id = media.calls[0]["video_id"]
    original = data_dir / "objects" / "sources" / video_id / "original"
    assert sha256_of(original) == hashlib.sha256(data).hexdigest()  # assembled before the kill

    media.delay = 0
    third = UploadProcess(data_dir, port, media_url, log)
    try:
        third.wait_ready()
        async with httpx.AsyncClient(base_url=third.base, timeout=30) as client:
            done = await client.post(
                "/api/v1/upload/complete",
                content=json.dumps({"upload_id": upload_id}),
                headers=upload_headers(),
            )
            assert done.status_code == 200, done.text
            video = done.json()
            again = await client.post(
                "/api/v1/upload/complete",
                content=json.dumps({"upload_id": upload_id}),
                headers=upload_headers(),
            )
            assert again.json() == video
    finally:
        third.stop()

    assert video["video_id"] == video_id
    assert sha256_of(original) == hashlib.sha256(data).hexdigest() == media.calls[-1]["sha256"]
    assert list(media.videos) == [(ACCOUNT, upload_id)]
    assert media.videos[(ACCOUNT, upload_id)]["embed_token"] == video["embed_token"]
    assert not list((data_dir / "objects" / ".avc" / "multipart").iterdir())
