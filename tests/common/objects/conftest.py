"""Fixtures for the objects contract suite: one harness per adapter, a fresh store per test.

Adapters: `local` (a tmp dir, always), `local-placed` (the same, every multipart upload hinted
with a part size, as the upload service does), `s3-moto` (a moto server started for the
session, a fresh bucket per test) and `minio` (AVC_TEST_S3_URL, else testcontainers when Docker
answers, else skipped with the reason).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from minio.deleteobjects import DeleteObject
from tests.support.s3 import S3Server, free_port, moto_server  # noqa: F401 - the fixture

from avc_common.objects import LocalObjectStore, ObjectStore, S3ObjectStore, open_objects

MINIO_SKIP = (
    "MinIO: no server reachable — set AVC_TEST_S3_URL or start a Docker engine for testcontainers"
)


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=15, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@pytest.fixture(scope="session")
def minio_server() -> Iterator[S3Server | None]:
    """Returns a MinIO server, or None when none is reachable (tests then skip)."""
    url = os.environ.get("AVC_TEST_S3_URL")
    if url:
        parts = urlsplit(url)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        yield S3Server(
            endpoint=parts.netloc.rpartition("@")[2],
            access_key=parts.username or "",
            secret_key=parts.password or "",
            secure=query.get("secure", "true").lower() in ("1", "true", "yes", "on"),
            region=query.get("region", "us-east-1"),
        )
        return
    if not _docker_answers():
        yield None
        return
    from testcontainers.community.minio import MinioContainer

    with MinioContainer() as container:
        config = container.get_config()
        yield S3Server(config["endpoint"], config["access_key"], config["secret_key"])


def _wipe_bucket(server: S3Server, bucket: str) -> None:
    client = server.client()
    with suppress(Exception):
        for upload in client._list_multipart_uploads(bucket).uploads:
            client._abort_multipart_upload(bucket, upload.object_name, upload.upload_id)
    with suppress(Exception):
        names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
        for _ in client.remove_objects(bucket, [DeleteObject(n) for n in names]):
            pass
        client.remove_bucket(bucket)
    client._http.clear()


@dataclass
class Harness:
    """One adapter under test: its store plus the backend-specific probes the contract needs."""

    kind: str
    store: ObjectStore
    root: Path | None = None
    server: S3Server | None = None

    @property
    def is_s3(self) -> bool:
        return self.server is not None

    def leftovers(self) -> list[str]:
        """Returns staging residue: temp files and parts (local), incomplete uploads (S3)."""
        if isinstance(self.store, LocalObjectStore):
            internal = Path(self.store.root) / ".avc"
            found = [p for d in ("tmp", "multipart") for p in (internal / d).rglob("*")]
            return sorted(str(p.relative_to(internal)) for p in found)
        assert isinstance(self.store, S3ObjectStore)
        assert self.server is not None
        client = self.server.client()
        uploads = client._list_multipart_uploads(self.store.bucket).uploads
        return sorted(f"{u.object_name}#{u.upload_id}" for u in uploads)

    def broken(self) -> ObjectStore:
        """Returns a store of the same kind whose backend is gone (for ping)."""
        if isinstance(self.store, LocalObjectStore):
            assert self.root is not None
            gone = self.root / "gone"
            store = LocalObjectStore(gone)
            shutil.rmtree(gone)
            return store
        dead = S3Server(f"127.0.0.1:{free_port()}", "testing", "testing")
        return open_objects(dead.url("nobody-home"))


class PlacedLocalObjectStore(LocalObjectStore):
    """The local adapter as the upload service uses it: multipart uploads hinted with 5 MiB
    parts, so the contract also covers parts written in place (and those that do not fit)."""

    async def create_multipart(
        self, key: str, *, content_type: str = "application/octet-stream"
    ) -> str:
        return await self.create_placed_multipart(
            key, content_type=content_type, part_size=PLACED_PART_SIZE
        )


PLACED_PART_SIZE = 5 * 1024 * 1024
ADAPTERS = ["local", "local-placed", "s3-moto", "minio"]


@pytest.fixture(params=ADAPTERS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind: str = request.param
    server: S3Server | None = None
    if kind == "local":
        root = tmp_path / "objects"
        made = Harness(kind, open_objects(f"file://{root}"), root=tmp_path)
    elif kind == "local-placed":
        made = Harness(kind, PlacedLocalObjectStore(tmp_path / "objects"), root=tmp_path)
    else:
        if kind == "s3-moto":
            server = request.getfixturevalue("moto_server")
        else:
            server = request.getfixturevalue("minio_server")
            if server is None:
                pytest.skip(MINIO_SKIP)
        assert server is not None
        bucket = f"avc-test-{uuid.uuid4().hex[:16]}"
        made = Harness(kind, open_objects(server.url(bucket)), root=tmp_path, server=server)
    await made.store.start()
    try:
        yield made
    finally:
        await made.store.close()
        if server is not None:
            assert isinstance(made.store, S3ObjectStore)
            _wipe_bucket(server, made.store.bucket)


@pytest.fixture
def store(harness: Harness) -> ObjectStore:
    return harness.store
