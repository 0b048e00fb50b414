"""The whole system as separate OS processes for fault tests: every target its own
`avcaption serve`, over the machine's RabbitMQ and Redis, objects on the moto S3 server.

Built on `tests.e2e.harness.Stack` (processes, logs, clean stops); adds S3 and Redis settings,
a unique Redis key prefix (AVC_RATELIMIT_KEY_PREFIX), `kill -9`, restarting a component on its
port, a webhook receiver, RabbitMQ restarts and a small API client.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

import httpx
from tests.e2e.harness import AMQP_URL, Component, Stack, free_port, running_stack
from tests.support.s3 import S3Server

REDIS_URL: Final = os.environ.get("AVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SERVICES: Final = ("media", "upload", "stats", "webhooks")
WORKERS: Final = ("media-worker", "webhooks-worker")
# Generous limits: the fault tests measure delivery, not the rate limiter (except where set).
UNLIMITED: Final = {
    f"AVC_{kind}_RATE_LIMIT_PER_MINUTE": "1000000"
    for kind in ("READ", "WRITE", "UPLOAD", "STATS", "PUBLIC")
}
FAST: Final = {
    "AVC_MEDIA_X264_PRESET": "ultrafast",
    "AVC_MEDIA_LADDER": "240",
    "AVC_WEBHOOKS_POLL_INTERVAL_SECONDS": "0.2",
    "AVC_ACCESS_LOG": "false",
    "AVC_LOG_LEVEL": "INFO",
}


def redis_problem(url: str = REDIS_URL) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class System:
    """A running system: `stack` holds the processes; `gateways` are the gateway names."""

    stack: Stack
    s3: S3Server
    bucket: str
    redis_prefix: str
    gateways: list[str] = field(default_factory=list)
    key: str = ""

    @property
    def env(self) -> dict[str, str]:
        return self.stack.env

    def url(self, gateway: str | None = None) -> str:
        return self.stack[gateway or self.gateways[0]].url

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def service_urls(self) -> dict[str, str]:
        return {
            f"AVC_{name.upper()}_URL": self.stack[name].url
            for name in SERVICES
            if name in self.stack.components
        }

    # -- processes -----------------------------------------------------------------------

    def kill9(self, name: str) -> int:
        """Kills a component with SIGKILL (no clean-up of any kind); returns its pid."""
        component = self.stack.components.pop(name)
        pid = component.pid
        os.kill(pid, signal.SIGKILL)
        component.proc.wait(10)
        component.stop()  # joins the output readers; the exit status (-9) is expected
        return pid

    def restart(self, name: str, *, port: int, env: Mapping[str, str] | None = None) -> Component:
        """Starts a component again on the port it had (the others keep their URLs)."""
        target = name.split("#")[0]
        args = [*_serve(target), "--host", "127.0.0.1", "--port", str(port)]
        component = self.stack.spawn_command(name, args, port=port, env=env)
        component.wait_ready()
        return component

    # -- API -----------------------------------------------------------------------------

    def request(
        self, method: str, path: str, *, gateway: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        kwargs.setdefault("timeout", 60)
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return httpx.request(method, self.url(gateway) + path, headers=headers, **kwargs)

    def video(self, video_id: str) -> dict[str, Any]:
        response = self.request("GET", f"/api/v1/videos/{video_id}")
        assert response.status_code == 200, response.text
        video: dict[str, Any] = response.json()
        return video

    def wait_videos(self, video_ids: Sequence[str], *, within: float) -> dict[str, dict[str, Any]]:
        """Returns the videos once none is `processing`; fails after `within` seconds."""
        deadline = time.monotonic() + within
        done: dict[str, dict[str, Any]] = {}
        while True:
            for video_id in video_ids:
                if video_id not in done:
                    video = self.video(video_id)
                    if video["status"] != "processing":
                        done[video_id] = video
            if len(done) == len(video_ids):
                return done
            assert time.monotonic() < deadline, (
                f"{len(video_ids) - len(done)} of {len(video_ids)} videos still processing "
                f"after {within} s:\n{self.stack.all_output()[-6000:]}"
            )
            time.sleep(0.5)

    def chunked_upload_start(self, path: Path, title: str) -> dict[str, Any]:
        size = path.stat().st_size
        body = {"filename": path.name, "size": size, "title": title}
        response = self.request("POST", "/api/v1/upload/init", json=body)
        assert response.status_code == 201, response.text
        init: dict[str, Any] = response.json()
        return init

    def send_chunk(self, upload_id: str, path: Path, index: int, chunk_size: int) -> httpx.Response:
        with path.open("rb") as f:
            f.seek(index * chunk_size)
            data = f.read(chunk_size)
        headers = {
            "X-Upload-ID": upload_id,
            "X-Chunk-Index": str(index),
            "X-Chunk-SHA256": hashlib.sha256(data).hexdigest(),
        }
        return self.request("POST", "/api/v1/upload/chunk", headers=headers, content=data)

    def complete(self, upload_id: str) -> httpx.Response:
        return self.request("POST", "/api/v1/upload/complete", json={"upload_id": upload_id})

    def redis_keys(self) -> list[str]:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        try:
            return [k.decode() for k in client.scan_iter(match=f"{self.redis_prefix}*")]
        finally:
            client.close()


def _serve(target: str) -> list[str]:
    from tests.e2e.harness import avcaption_command

    return [*avcaption_command(), "serve", "--target", target]


@contextmanager
def running_system(
    root: Path,
    s3: S3Server,
    *,
    services: Sequence[str] = SERVICES,
    workers: Sequence[str] = WORKERS,
    gateways: int = 1,
    env: Mapping[str, str] | None = None,
) -> Iterator[System]:
    """Starts the services, workers and `gateways` gateway replicas (named gateway, gateway#2 …)
    as separate processes; yields once all are ready; stops everything and cleans RabbitMQ,
    Redis and the bucket's processes at the end (every process still running must exit 0)."""
    run_id = uuid.uuid4().hex[:10]
    bucket = f"rel-{run_id}"
    prefix = f"avc:test:{run_id}:"
    extra = {
        **UNLIMITED,
        **FAST,
        "AVC_STORAGE_URL": s3.url(bucket),
        "AVC_RATELIMIT_URL": REDIS_URL,
        "AVC_RATELIMIT_KEY_PREFIX": prefix,
        **(env or {}),
    }
    with running_stack(root, bus_url=AMQP_URL, extra_env=extra) as stack:
        system = System(stack, s3, bucket, prefix)
        try:
            ports = {name: free_port() for name in services}
            urls = {f"AVC_{n.upper()}_URL": f"http://127.0.0.1:{p}" for n, p in ports.items()}
            started = [stack.spawn(name, env=urls, port=ports[name]) for name in services]
            started += [stack.spawn(name, env=urls) for name in workers]
            for component in started:
                component.wait_ready()
            for i in range(gateways):
                name = "gateway" if i == 0 else f"gateway#{i + 1}"
                port = free_port()
                args = [*_serve("gateway"), "--host", "127.0.0.1", "--port", str(port)]
                stack.spawn_command(name, args, port=port, env=urls).wait_ready()
                system.gateways.append(name)
            system.key = stack.api_key()
            yield system
        finally:
            _forget_redis(prefix)


def _forget_redis(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
    finally:
        client.close()


# -- RabbitMQ --------------------------------------------------------------------------------


def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    path = shutil.which("rabbitmqctl")
    assert path, "rabbitmqctl is needed to restart the broker"
    result = subprocess.run(
        [path, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"rabbitmqctl {' '.join(args)}: {result.stdout}{result.stderr}"
    return result.stdout


@contextmanager
def broker_stopped() -> Iterator[None]:
    """Stops the RabbitMQ app for the block, then starts it and waits for it (always)."""
    rabbitmqctl("stop_app")
    try:
        yield
    finally:
        rabbitmqctl("start_app")
        rabbitmqctl("await_startup")


# -- webhook receiver ------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    event_id: str
    event_type: str
    at: float
    status: int


class WebhookReceiver:
    """An HTTP receiver on a fixed local port that records every request (`webhook-id`,
    event type, time, the status it answered). `answer` picks the status per request."""

    def __init__(self, port: int | None = None, answer: Callable[[str], int] | None = None):
        self.port = port or free_port()
        self.answer = answer or (lambda _event_id: 200)
        self.received: list[Delivery] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                event_id = self.headers.get("webhook-id", "")
                status = receiver.answer(event_id)
                with receiver._lock:
                    receiver.received.append(
                        Delivery(event_id, str(body.get("type")), time.time(), status)
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> dict[str, list[Delivery]]:
        """Returns event id -> the successful deliveries of it."""
        out: dict[str, list[Delivery]] = {}
        with self._lock:
            for d in self.received:
                if 200 <= d.status < 300:
                    out.setdefault(d.event_id, []).append(d)
        return out
