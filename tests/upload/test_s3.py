"""The storage-dependent happy paths against the S3 adapter (a moto server): chunks become
parts of an S3 multipart upload, S3 concatenates them, and the service reads the object once
to get its SHA-256 (S3 never shows it the bytes in order)."""

from __future__ import annotations

import hashlib
import random
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from tests.support.assertions import assert_error
from tests.upload.conftest import (
    MIB,
    SECRET,
    S3Server,
    running_harness,
    upload_settings,
)

from avc_common.config import Settings
from avc_common.objects import S3ObjectStore

CHUNK = 5 * MIB

pytestmark = pytest.mark.slow


def s3_settings(tmp_path: Path, server: S3Server) -> Settings:
    bucket = f"avc-upload-{uuid.uuid4().hex[:12]}"
    return Settings(
        data_dir=tmp_path / "data",
        storage_url=server.url(bucket),
        internal_secret=SecretStr(SECRET),
    )


async def _open_uploads(store: S3ObjectStore) -> list[str]:
    client = store._client
    uploads = client._list_multipart_uploads(store.bucket).uploads
    return [u.object_name for u in uploads]


async def test_seed_steps_on_s3(tmp_path: Path, moto_server: S3Server, video_bytes: bytes) -> None:
    data = video_bytes
    async with running_harness(s3_settings(tmp_path, moto_server), upload_settings()) as harness:
        assert isinstance(harness.objects, S3ObjectStore)
        init = await harness.init(len(data))
        order = list(range(init["total_chunks"]))
        random.Random(5).shuffle(order)
        await harness.send_chunks(init["upload_id"], data, CHUNK, order, parallel=4, with_sha=True)
        done = await harness.complete(init["upload_id"])
        assert done.status_code == 200, done.text
        video = done.json()

        stored = await harness.stored_bytes(video["video_id"])
        assert stored == data
        source_sha = hashlib.sha256(data).hexdigest()
        assert hashlib.sha256(stored).hexdigest() == source_sha
        assert harness.media.calls[0]["sha256"] == source_sha
        assert harness.events[0].data["sha256"] == source_sha
        assert await _open_uploads(harness.objects) == []
        assert (await harness.complete(init["upload_id"])).json() == video


async def test_resume_abort_and_direct_upload_on_s3(
    tmp_path: Path, moto_server: S3Server, small_video_bytes: bytes
) -> None:
    data = random.Random(9).randbytes(2 * CHUNK + 99)
    async with running_harness(s3_settings(tmp_path, moto_server), upload_settings()) as harness:
        init = await harness.init(len(data), filename="resume.bin")
        await harness.send_chunks(init["upload_id"], data, CHUNK, [2])
        assert (await harness.status(init["upload_id"])).json()["missing"] == [0, 1]
        bad = await harness.chunk(
            init["upload_id"], 0, data[:CHUNK], **{"X-Chunk-SHA256": "1" * 64}
        )
        assert_error(bad, 422, "checksum_mismatch")
        await harness.send_chunks(init["upload_id"], data, CHUNK, [0, 1])
        done = await harness.complete(init["upload_id"])
        assert await harness.stored_bytes(done.json()["video_id"]) == data

        other = await harness.init(CHUNK + 1, filename="aborted.bin")
        await harness.send_chunks(other["upload_id"], b"a" * (CHUNK + 1), CHUNK, [0])
        assert len(await _open_uploads(harness.objects)) == 1
        aborted = await harness.client.delete(
            f"/api/v1/upload/{other['upload_id']}", headers=harness.headers()
        )
        assert aborted.status_code == 204
        assert await _open_uploads(harness.objects) == []

        small = small_video_bytes
        direct = await harness.client.post(
            "/api/v1/upload",
            files={"file": ("small.mp4", small, "video/mp4")},
            headers=harness.headers(content_type=None),
        )
        assert direct.status_code == 201, direct.text
        assert await harness.stored_bytes(direct.json()["video_id"]) == small
        assert harness.media.calls[-1]["sha256"] == hashlib.sha256(small).hexdigest()
