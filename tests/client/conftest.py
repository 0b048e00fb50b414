"""Fixtures of the client tests: one real all-in-one server (`avcaption serve`, in-process bus,
a temp AVC_DATA_DIR) for the whole session, accounts made with `avcaption admin`, and helpers
to run the `avc` command line as a real process."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import PASSWORD, Component, Stack, base_env, running_stack

MIB = 1024 * 1024


@dataclass
class Server:
    stack: Stack
    component: Component

    @property
    def url(self) -> str:
        return self.component.url

    def account(self, *, plan: str = "enterprise") -> Account:
        """A new account with an API key."""
        email = f"client-{uuid.uuid4().hex[:10]}@example.com"
        key = self.stack.api_key(email, plan=plan)
        return Account(email, key, PASSWORD)

    def metric(self, name: str, **labels: str) -> float:
        """Sums a Prometheus series of `/metrics` over the series matching `labels`."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{"):
                continue
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def chunks_accepted(self) -> int:
        """Chunks the upload service stored (counted server-side)."""
        return int(self.metric("avc_upload_chunks_total", outcome="ok"))


@dataclass
class Account:
    email: str
    api_key: str
    password: str


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("client-server")
    env = {"AVC_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.2", "AVC_LOG_LEVEL": "INFO"}
    with running_stack(root, bus_url="memory://", extra_env=env) as stack:
        component = stack.start_all_in_one()
        yield Server(stack, component)


@pytest.fixture(scope="session")
def account(server: Server) -> Account:
    """An enterprise account shared by tests that do not change its settings."""
    return server.account()


def avc_command() -> list[str]:
    script = Path(sys.executable).with_name("avc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avcaption_client.cli"]


def avc_env(server: Server, account: Account | None, home: Path, **extra: str) -> dict[str, str]:
    """A clean environment for `avc`: the server's URL, the key, a private config home."""
    env = base_env()
    env.update({"AVC_API_URL": server.url, "XDG_CONFIG_HOME": str(home / "config")})
    env["XDG_STATE_HOME"] = str(home / "state")
    if account is not None:
        env["AVC_API_KEY"] = account.api_key
    env.update(extra)
    return env


def run_avc(
    *args: str,
    env: Mapping[str, str],
    cwd: Path,
    stdin: str | None = None,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*avc_command(), *args],
        env=dict(env),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def random_file(path: Path, size: int) -> Path:
    """`size` incompressible bytes (1 MiB random blocks, each different)."""
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, MIB)
            f.write(os.urandom(n))
            left -= n
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * MIB):
            digest.update(block)
    return digest.hexdigest()


def eventually(check: object, *, within: float = 60.0, interval: float = 0.1) -> None:
    """Calls `check()` until it returns true; fails after `within` seconds."""
    assert callable(check)
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        time.sleep(interval)
