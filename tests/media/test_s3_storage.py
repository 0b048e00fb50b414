"""The same flow with S3 storage (a local moto server): the source is streamed to a work file
before ffmpeg reads it, and playback (with ranges) reads from S3."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from tests.media.conftest import INTERNAL_SECRET, _MediaStack, media_settings
from tests.support.videos import make_video

from avc_common.config import Settings

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_url() -> Iterator[str]:
    exe = Path(sys.executable).parent / "moto_server"
    command = str(exe) if exe.exists() else shutil.which("moto_server")
    if command is None:
        pytest.skip("moto_server is not installed (it comes with moto[server])")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                    break
            except urllib.error.HTTPError:
                break
            except OSError:
                assert time.monotonic() < deadline, "moto_server did not start"
                time.sleep(0.1)
        yield f"s3://testing:testing@127.0.0.1:{port}/media-test?secure=false&region=us-east-1"
    finally:
        proc.terminate()
        proc.wait(10)


async def test_encode_and_play_from_s3(s3_url: str, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=2, width=320, height=240)
    settings = Settings(
        data_dir=tmp_path / "data",
        storage_url=s3_url,
        internal_secret=SecretStr(INTERNAL_SECRET),
    )
    work = tmp_path / "work"
    stack: Any = _MediaStack(settings, media_settings(work), worker=True)
    media = await stack.__aenter__()
    try:
        video_id = await media.upload("acct_a", clip)
        video = await media.wait_status("acct_a", video_id, within=120)
        assert video["status"] == "ready", video["error"]
        # The downloaded source and outputs are cleaned up: the worker's own scratch folder
        # holds only its owner marker (avc_media.scratch).
        (folder,) = work.iterdir()
        assert [p.name for p in folder.iterdir()] == ["owner.json"]
        base = video["hls_url"].rsplit("/", 1)[0]
        playlist = (await media.client.get(f"{base}/240p/index.m3u8")).text
        segment = next(line for line in playlist.splitlines() if line.endswith(".ts"))
        whole = await media.client.get(f"{base}/240p/{segment}")
        assert whole.status_code == 200
        part = await media.client.get(f"{base}/240p/{segment}", headers={"Range": "bytes=188-375"})
        assert part.status_code == 206
        assert part.content == whole.content[188:376]
    finally:
        await stack.__aexit__(None, None, None)
