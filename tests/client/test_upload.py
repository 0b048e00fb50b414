"""`upload(path)` against a real all-in-one server: chunked with N in flight and each chunk's
SHA-256, the stored file byte-for-byte the source, direct for small files, progress, and a
stored upload the server no longer knows starting again cleanly."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.client.conftest import MIB, Account, Server, random_file, sha256_of
from tests.e2e.harness import running_stack
from tests.support.videos import make_video

from avcaption_client import AsyncClient, Client, UploadProgress
from avcaption_client.errors import ApiError, ChecksumMismatchError
from avcaption_client.uploads import state_path


class CountingTransport(httpx.AsyncHTTPTransport):
    """The real transport, counting chunk requests in flight and the headers they carried."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = 0
        self.max_in_flight = 0
        self.chunk_headers: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/api/v1/upload/chunk":
            return await super().handle_async_request(request)
        self.chunk_headers.append(dict(request.headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await super().handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.in_flight -= 1


async def test_50_mib_upload_with_4_in_flight_keeps_the_sha256(
    server: Server, account: Account, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "lesson.bin", 50 * MIB)
    transport = CountingTransport()
    seen: list[UploadProgress] = []
    before = server.chunks_accepted()
    async with AsyncClient(account.api_key, api_url=server.url, transport=transport) as client:
        result = await client.upload(source, parallel=4, progress=seen.append)
        video = await client.get_video(result.video_id)

    assert result.chunked
    assert result.chunks_sent == 10  # 50 MiB in 5 MiB chunks
    assert transport.max_in_flight == 4
    assert server.chunks_accepted() - before == 10
    assert video.sha256 == sha256_of(source)
    assert video.size_bytes == 50 * MIB
    # Each chunk carried its own SHA-256.
    import hashlib

    with source.open("rb") as f:
        first = f.read(5 * MIB)
    by_index = {h["x-chunk-index"]: h["x-chunk-sha256"] for h in transport.chunk_headers}
    assert by_index["0"] == hashlib.sha256(first).hexdigest()
    assert len(by_index) == 10
    # Progress went up to the whole file, never backwards.
    sent = [p.sent_bytes for p in seen]
    assert sent == sorted(sent)
    assert sent[-1] == 50 * MIB
    assert seen[-1].done_chunks == seen[-1].total_chunks == 10
    assert not state_path(source).exists()  # the resume state is gone once complete


def test_sync_client_chunked_and_direct(server: Server, account: Account, tmp_path: Path) -> None:
    big = random_file(tmp_path / "big.bin", 12 * MIB + 123)
    clip = make_video(tmp_path / "clip.mp4", seconds=1)
    with Client(account.api_key, api_url=server.url) as client:
        chunked = client.upload(big, parallel=3, title="Big one")
        direct = client.upload(clip)
        big_video = client.get_video(chunked.video_id)
        clip_video = client.get_video(direct.video_id)
    assert (chunked.chunked, chunked.chunks_sent) == (True, 3)
    assert direct.chunked is False
    assert big_video.title == "Big one"
    assert big_video.sha256 == sha256_of(big)
    assert clip_video.sha256 == sha256_of(clip)
    assert clip_video.filename == "clip.mp4"


async def test_unknown_stored_upload_starts_again_cleanly(
    server: Server, account: Account, tmp_path: Path
) -> None:
    """The state names an upload the server no longer has (aborted here; expired uploads
    answer the same way once swept): the next run starts a new upload."""
    source = random_file(tmp_path / "again.bin", 11 * MIB)
    async with AsyncClient(account.api_key, api_url=server.url) as client:
        init = await client.init_upload("again.bin", source.stat().st_size)
        await client.upload_chunk(init.upload_id, 0, source.read_bytes()[: init.chunk_size])
        st = source.stat()
        state = {
            "upload_id": init.upload_id,
            "api_url": server.url,
            "path": str(source.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "chunk_size": init.chunk_size,
            "total_chunks": init.total_chunks,
        }
        state_path(source).write_text(json.dumps(state))
        await client.abort_upload(init.upload_id)

        result = await client.upload(source)
        video = await client.get_video(result.video_id)
    assert result.upload_id != init.upload_id
    assert result.restarted
    assert result.chunks_sent == 3
    assert video.sha256 == sha256_of(source)


async def test_a_resumed_upload_sends_only_what_is_missing(
    server: Server, account: Account, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "half.bin", 26 * MIB)
    async with AsyncClient(account.api_key, api_url=server.url) as client:
        init = await client.init_upload("half.bin", source.stat().st_size)
        data = source.read_bytes()
        for index in (0, 2, 5):
            chunk = data[index * init.chunk_size : (index + 1) * init.chunk_size]
            await client.upload_chunk(init.upload_id, index, chunk)
        st = source.stat()
        state_path(source).write_text(
            json.dumps(
                {
                    "upload_id": init.upload_id,
                    "api_url": server.url,
                    "path": str(source.resolve()),
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "chunk_size": init.chunk_size,
                    "total_chunks": init.total_chunks,
                }
            )
        )
        before = server.chunks_accepted()
        seen: list[UploadProgress] = []
        result = await client.upload(source, progress=seen.append)
        video = await client.get_video(result.video_id)
    assert result.resumed
    assert result.upload_id == init.upload_id
    assert result.chunks_sent == 3  # 1, 3, 4 of 0..5
    assert server.chunks_accepted() - before == 3
    assert seen[0].resumed_bytes == 11 * MIB  # chunks 0 and 2, and the last (1 MiB)
    assert video.sha256 == sha256_of(source)


async def test_a_wrong_chunk_checksum_is_refused_with_its_error(
    server: Server, account: Account, tmp_path: Path
) -> None:
    async with AsyncClient(account.api_key, api_url=server.url) as client:
        init = await client.init_upload("x.bin", 10)
        with pytest.raises(ChecksumMismatchError) as caught:
            await client.upload_chunk(init.upload_id, 0, b"0123456789", sha256="0" * 64)
        await client.abort_upload(init.upload_id)
    error: Any = caught.value
    assert (error.status, error.code) == (422, "checksum_mismatch")
    assert error.request_id


async def test_uploads_of_several_files_at_once_share_one_client(
    server: Server, account: Account, tmp_path: Path
) -> None:
    files = [random_file(tmp_path / f"f{i}.bin", 9 * MIB + i) for i in range(3)]
    async with AsyncClient(account.api_key, api_url=server.url) as client:
        results = await asyncio.gather(*(client.upload(f, parallel=2) for f in files))
        videos = [await client.get_video(r.video_id) for r in results]
    assert [v.sha256 for v in videos] == [sha256_of(f) for f in files]


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose chunked uploads expire 3 s after `init`."""
    root = tmp_path_factory.mktemp("short-lived")
    env = {"AVC_UPLOAD_EXPIRY_SECONDS": "3", "AVC_UPLOAD_SWEEP_INTERVAL_SECONDS": "1"}
    with running_stack(root, bus_url="memory://", extra_env=env) as stack:
        yield Server(stack, stack.start_all_in_one())


async def test_an_expired_upload_starts_again_cleanly(short_lived: Server, tmp_path: Path) -> None:
    account = short_lived.account()
    source = random_file(tmp_path / "late.bin", 11 * MIB)
    async with AsyncClient(account.api_key, api_url=short_lived.url) as client:
        init = await client.init_upload("late.bin", source.stat().st_size)
        await client.upload_chunk(init.upload_id, 0, source.read_bytes()[: init.chunk_size])
        st = source.stat()
        state = {
            "upload_id": init.upload_id,
            "api_url": short_lived.url,
            "path": str(source.resolve()),
            "size": st.st_size,
            "mtime_ns": st.st_mtime_ns,
            "chunk_size": init.chunk_size,
            "total_chunks": init.total_chunks,
        }
        state_path(source).write_text(json.dumps(state))
        await asyncio.sleep(4)
        with pytest.raises(ApiError) as expired:
            await client.get_upload(init.upload_id)
        assert expired.value.code in ("upload_expired", "upload_not_found")

        result = await client.upload(source, parallel=2)
        video = await client.get_video(result.video_id)
    assert result.restarted
    assert not result.resumed
    assert result.upload_id != init.upload_id
    assert result.chunks_sent == 3
    assert video.sha256 == sha256_of(source)
    assert not state_path(source).exists()
