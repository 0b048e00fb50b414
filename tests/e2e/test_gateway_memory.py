"""The proxy streams: 50 MiB through the gateway process barely moves its memory.

The gateway (its middleware stack and the proxy router, admitting everyone) and a fake service
that only counts bytes run as separate processes (`standalone.py`), so the resident memory
sampled during the transfer is the gateway's alone.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from .harness import Stack, free_port, running_stack

MiB = 1024 * 1024
BODY = 50 * MiB
# Far below the body: holding it whole (or even a fifth of it) would fail.
MAX_GROWTH = 20 * MiB
STANDALONE = Path(__file__).with_name("standalone.py")

pytestmark = pytest.mark.slow


@dataclass
class RssSampler:
    """Samples a process's RSS every few milliseconds on a thread."""

    pid: int
    interval: float = 0.005
    samples: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> RssSampler:
        self._process = psutil.Process(self.pid)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self._process.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    @property
    def peak(self) -> int:
        return max(self.samples)


@pytest.fixture(scope="module")
def proxy_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("memory")
    with running_stack(root, bus_url="memory://") as stack:
        port = free_port()
        upstream = stack.spawn_command(
            "upstream",
            [sys.executable, str(STANDALONE), "upstream", "--port", str(port)],
            port=port,
        )
        upstream.wait_ready()
        port = free_port()
        gateway = stack.spawn_command(
            "gateway",
            [sys.executable, str(STANDALONE), "gateway", "--port", str(port)],
            port=port,
            env={"AVC_UPLOAD_URL": upstream.url, "AVC_MEDIA_URL": upstream.url},
        )
        gateway.wait_ready()
        yield stack


def _body(total: int, chunk: int = MiB) -> Iterator[bytes]:
    block = b"\x5a" * chunk
    sent = 0
    while sent < total:
        part = block[: min(chunk, total - sent)]
        sent += len(part)
        yield part


def _warm_up(client: httpx.Client, url: str) -> None:
    for _ in range(3):
        client.post(f"{url}/api/v1/upload/chunk", content=_body(5 * MiB)).raise_for_status()
        client.get(f"{url}/api/v1/videos/vid_warm?size={5 * MiB}").raise_for_status()


def _report(direction: str, baseline: int, sampler: RssSampler, seconds: float) -> int:
    growth = sampler.peak - baseline
    print(
        f"\n{direction}: {BODY / MiB:.0f} MiB in {seconds:.2f} s "
        f"({BODY / MiB / seconds:.0f} MiB/s); gateway RSS baseline {baseline / MiB:.1f} MiB, "
        f"peak {sampler.peak / MiB:.1f} MiB, growth {growth / MiB:.2f} MiB "
        f"({len(sampler.samples)} samples)"
    )
    return growth


def test_a_50_mib_upload_streams_through_the_gateway(proxy_only: Stack) -> None:
    gateway = proxy_only["gateway"]
    with httpx.Client(timeout=60) as client:
        _warm_up(client, gateway.url)
        baseline = psutil.Process(gateway.pid).memory_info().rss
        started = time.monotonic()
        with RssSampler(gateway.pid) as sampler:
            response = client.post(
                f"{gateway.url}/api/v1/upload/chunk",
                content=_body(BODY),
                headers={"X-Request-ID": "memory-upload"},
            )
        seconds = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json() == {"received": BODY}
    growth = _report("upload through the gateway", baseline, sampler, seconds)
    assert growth < MAX_GROWTH


def test_a_50_mib_download_streams_through_the_gateway(proxy_only: Stack) -> None:
    gateway = proxy_only["gateway"]
    with httpx.Client(timeout=60) as client:
        _warm_up(client, gateway.url)
        baseline = psutil.Process(gateway.pid).memory_info().rss
        started = time.monotonic()
        received = 0
        with (
            RssSampler(gateway.pid) as sampler,
            client.stream("GET", f"{gateway.url}/api/v1/videos/vid_1?size={BODY}") as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-length"] == str(BODY)
            for chunk in response.iter_raw():
                received += len(chunk)
        seconds = time.monotonic() - started
    assert received == BODY
    growth = _report("download through the gateway", baseline, sampler, seconds)
    assert growth < MAX_GROWTH
