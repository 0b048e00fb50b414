"""An S3 server for the tests: a moto server started once per session (`moto_server`)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from minio import Minio


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


def wait_http(url: str, proc: subprocess.Popen[bytes], within: float = 30.0) -> None:
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
        wait_http(f"http://127.0.0.1:{port}/", proc)
        yield S3Server(f"127.0.0.1:{port}", "testing", "testing")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
