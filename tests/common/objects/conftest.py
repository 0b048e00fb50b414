"""Fixtures for the objects contract suite: one harness per adapter, a fresh store per test.

Adapters: `local` (a tmp dir, always), `s3-moto` (a moto server started for the session, a fresh
bucket per test) and `minio` (AVC_TEST_S3_URL, else testcontainers when Docker answers, else
skipped with the reason).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
from minio import Minio
from minio.deleteobjects import DeleteObject

from avc_common.objects import LocalObjectStore, ObjectStore, S3ObjectStore, open_objects

MINIO_SKIP = (
    "MinIO: no server reachable — set AVC_TEST_S3_URL or start a Docker engine for testcontainers"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class S3Server:
    """Where an S3 server answers; each test gets its own bucket on it."""

    endpoint: str
    access_key: str
    secret_key: str
    secure: bool = False
    region: str = "us-east-1"

    def url(self, bucket: str) -> str:
        creds = f"{quote(self.access_key, safe='')}:{quote(self.secret_key, safe='')}"
        secure = "true" if self.secure else "false"
        return f"s3://{creds}@{self.endpoint}/{bucket}?secure={secure}&region={self.region}"

    def client(self) -> Minio:
        return Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=self.secure,
            region=self.region,
        )


def _wait_http(url: str, proc: subprocess.Popen[bytes], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except urllib.error.HTTPError:
            return  # it answers, even if with an error
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server did not answer at {url} within {within}s")


@pytest.fixture(scope="session")
def moto_server() -> Iterator[S3Server]:
    exe = Path(sys.executable).parent / "moto_server"
    command = str(exe) if exe.exists() else shutil.which("moto_server")
    if command is None:
        pytest.fail("moto_server is not installed (it comes with moto[server])")
    port = free_port()
    proc = subprocess.Popen(
        [command, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/", proc)
        yield S3Server(f"127.0.0.1:{port}", "testing", "testing")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


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
        if self.kind == "local":
            assert self.root is not None
            gone = self.root / "gone"
            store = LocalObjectStore(gone)
            shutil.rmtree(gone)
            return store
        dead = S3Server(f"127.0.0.1:{free_port()}", "testing", "testing")
        return open_objects(dead.url("nobody-home"))


ADAPTERS = ["local", "s3-moto", "minio"]


@pytest.fixture(params=ADAPTERS)
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    kind: str = request.param
    server: S3Server | None = None
    if kind == "local":
        root = tmp_path / "objects"
        made = Harness(kind, open_objects(f"file://{root}"), root=tmp_path)
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
