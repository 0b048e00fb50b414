"""Runs AVCaption components as real OS processes for end-to-end tests and benchmarks.

`Stack` starts `avcaption serve --target …` processes on free local ports, all sharing one data
dir, one internal secret and one RabbitMQ exchange/queue prefix that is unique to the stack
(deleted again at the end), with the gateway pointed at the services. It waits for each
`/readyz`, keeps every process's output (JSON log lines on stdout) for the tests to search,
runs `avcaption admin …` against the same data, and stops everything with SIGTERM, checking
that each process exited cleanly.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import httpx

AMQP_URL: Final = os.environ.get("AVC_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
SERVICES: Final = ("upload", "media", "stats", "webhooks")
READY_TIMEOUT: Final = 60.0
STOP_TIMEOUT: Final = 30.0
PASSWORD: Final = "e2e password 0123456789"


def free_port() -> int:
    """Returns a local TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


STANDALONE: Final = Path(__file__).with_name("standalone.py")


def avcaption_command() -> list[str]:
    """Returns how to run the `avcaption` console script of this environment."""
    script = Path(sys.executable).with_name("avcaption")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avcaption"]


def base_env() -> dict[str, str]:
    """Returns this process's environment without any `AVC_*` setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def amqp_problem(url: str = AMQP_URL) -> str | None:
    """Returns why RabbitMQ does not answer at `url`, or None when it does."""
    import aio_pika

    async def probe() -> None:
        connection = await aio_pika.connect(url, timeout=3)
        await connection.close()

    try:
        asyncio.run(asyncio.wait_for(probe(), 5))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class Process:
    """One running process whose stdout and stderr are captured line by line."""

    def __init__(self, name: str, args: Sequence[str], *, env: Mapping[str, str], log: Path):
        self.name = name
        self.args = list(args)
        self.log_path = log
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._sink = log.open("a", encoding="utf-8")
        self.proc = subprocess.Popen(
            self.args,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=log.parent,
        )
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._pump, args=(pipe,), daemon=True)
            for pipe in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _pump(self, pipe: IO[bytes]) -> None:
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                self.lines.append(line)
                self._sink.write(line + "\n")
                self._sink.flush()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        """Returns everything the process wrote so far (stdout and stderr interleaved)."""
        with self._lock:
            return "\n".join(self.lines)

    def records(self) -> list[dict[str, Any]]:
        """Returns the JSON log lines written so far, parsed."""
        with self._lock:
            lines = list(self.lines)
        out = []
        for line in lines:
            with suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    out.append(value)
        return out

    def wait_for_record(self, within: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Returns the first log record having all `fields`; fails after `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            for record in self.records():
                if all(record.get(k) == v for k, v in fields.items()):
                    return record
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no log line with {fields} within {within} s:\n{self.tail()}"
                )
            time.sleep(0.05)

    def tail(self, lines: int = 60) -> str:
        with self._lock:
            return "\n".join(self.lines[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """Sends SIGTERM and returns the exit code (kills it after `timeout`: then -9)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for reader in self._readers:
            reader.join(5)
        self._sink.close()
        return self.proc.returncode


class Component(Process):
    """A process serving HTTP on a local port."""

    def __init__(
        self, name: str, args: Sequence[str], *, env: Mapping[str, str], log: Path, port: int
    ):
        super().__init__(name, args, env=env, log=log)
        self.port = port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Returns once `/readyz` answers 200; fails with the process output otherwise."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(
                    f"{self.name} exited with {code} before it was ready:\n{self.tail(200)}"
                )
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=2)
                if response.status_code == 200:
                    return
                last = f"{response.status_code} {response.text[:300]}"
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise AssertionError(
            f"{self.name} not ready within {timeout} s (last: {last}):\n{self.tail(200)}"
        )


@dataclass
class Stack:
    """Components of one test run: shared data dir, secrets and bus namespace."""

    root: Path
    bus_url: str = AMQP_URL
    extra_env: dict[str, str] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def __post_init__(self) -> None:
        self.data_dir = self.root / "data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs_dir = self.root / "logs"
        self.logs_dir.mkdir(exist_ok=True)
        self.exchange = f"e2e.{self.run_id}.events"
        self.queue_prefix = f"e2e.{self.run_id}"
        self.env = base_env()
        self.env.update(
            {
                "AVC_DATA_DIR": str(self.data_dir),
                "AVC_INTERNAL_SECRET": secrets.token_hex(32),
                "AVC_JWT_SECRET": secrets.token_hex(32),
                "AVC_API_KEY_SECRET": secrets.token_hex(32),
                "AVC_BUS_URL": self.bus_url,
                "AVC_BUS_EXCHANGE": self.exchange,
                "AVC_BUS_QUEUE_PREFIX": self.queue_prefix,
                "AVC_WEBHOOKS_ALLOW_INSECURE": "1",
                "AVC_LOG_LEVEL": "INFO",
                **self.extra_env,
            }
        )
        self.secret = self.env["AVC_INTERNAL_SECRET"]

    # -- processes -----------------------------------------------------------------------

    def spawn(
        self, target: str, *, env: Mapping[str, str] | None = None, port: int | None = None
    ) -> Component:
        """Starts `avcaption serve --target <target>` (not waiting for it to be ready)."""
        port = port if port is not None else free_port()
        args = [*avcaption_command(), "serve", "--target", target]
        args += ["--host", "127.0.0.1", "--port", str(port)]
        return self.spawn_command(target, args, port=port, env=env)

    def spawn_command(
        self, name: str, args: Sequence[str], *, port: int, env: Mapping[str, str] | None = None
    ) -> Component:
        """Starts any server process (listening on `port`) with the stack's environment."""
        if name in self.components and self.components[name].proc.poll() is None:
            raise RuntimeError(f"{name} is already running")
        component = Component(
            name,
            args,
            env={**self.env, **(env or {})},
            log=self.logs_dir / f"{name}.log",
            port=port,
        )
        self.components[name] = component
        return component

    def start_services(self, services: Sequence[str] = SERVICES) -> None:
        """Starts the services, then the gateway pointed at them; waits until all are ready."""
        # Every component learns every service's URL: upload calls media's internal API too.
        ports = {name: free_port() for name in services}
        urls = {f"AVC_{name.upper()}_URL": f"http://127.0.0.1:{p}" for name, p in ports.items()}
        started = [self.spawn(name, env=urls, port=ports[name]) for name in services]
        started.append(self.spawn("gateway", env=urls))
        for component in started:
            component.wait_ready()

    def start_all_in_one(self) -> Component:
        """Starts `--target all` (bus in-process) and waits until it is ready."""
        component = self.spawn("all", env={"AVC_BUS_URL": "memory://"})
        component.wait_ready()
        return component

    def __getitem__(self, target: str) -> Component:
        return self.components[target]

    @property
    def gateway(self) -> Component:
        return self.components.get("gateway") or self.components["all"]

    def stop(self, target: str) -> int:
        """Stops one component with SIGTERM; returns its exit code."""
        return self.components[target].stop()

    def stop_all(self) -> dict[str, int]:
        """Stops every component (gateway first); returns name -> exit code."""
        order = sorted(self.components, key=lambda n: n not in ("gateway", "all"))
        return {name: self.components[name].stop() for name in order}

    def all_output(self) -> str:
        """Returns what every process wrote, one block per process."""
        return "\n".join(f"--- {n}\n{c.text()}" for n, c in self.components.items())

    # -- operator commands ---------------------------------------------------------------

    def admin(self, *args: str, stdin: str | None = None) -> str:
        """Runs `avcaption admin …` on this stack's data; returns stdout (fails on errors)."""
        result = subprocess.run(
            [*avcaption_command(), "admin", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
        )
        if result.returncode != 0:
            raise AssertionError(
                f"avcaption admin {' '.join(args[:1])} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def api_key(self, email: str | None = None, *, plan: str = "enterprise") -> str:
        """Creates an account and returns a new API key for it."""
        email = email or f"e2e-{uuid.uuid4().hex[:8]}@example.com"
        account = ["create-account", "--email", email, "--plan", plan, "--password-stdin"]
        self.admin(*account, stdin=PASSWORD + "\n")
        key = self.admin("create-api-key", "--email", email, "--name", "e2e").strip()
        assert key.startswith("avc_"), key
        return key

    # -- cleanup -------------------------------------------------------------------------

    def delete_bus_objects(self) -> None:
        """Deletes this stack's exchanges and queues from RabbitMQ (best effort, warns)."""
        if not self.bus_url.startswith("amqp"):
            return
        # Retried for a while: another test may be restarting the shared broker right now.
        deadline = time.monotonic() + 60
        while True:
            try:
                queues = _queues_with_prefix(self.queue_prefix + ".")
                exchanges = [self.exchange, f"{self.exchange}.dlx"]
                asyncio.run(_delete(self.bus_url, queues, exchanges))
                return
            except Exception as exc:
                if time.monotonic() > deadline:
                    warnings.warn(
                        f"could not clean up RabbitMQ for {self.run_id}: {exc!r}", stacklevel=1
                    )
                    return
                time.sleep(2)


def _queues_with_prefix(prefix: str) -> list[str]:
    """Returns the broker's queues named `prefix…` (needs rabbitmqctl; [] without it)."""
    path = shutil.which("rabbitmqctl")
    if path is None:
        warnings.warn("rabbitmqctl not found: e2e queues are left behind", stacklevel=2)
        return []
    try:
        listing = subprocess.run(
            [path, "-q", "list_queues", "name", "--no-table-headers"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise RuntimeError(f"rabbitmqctl list_queues failed: {exc!r}") from exc
    return [line.strip() for line in listing.splitlines() if line.strip().startswith(prefix)]


async def _delete(url: str, queues: Sequence[str], exchanges: Sequence[str]) -> None:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=5)
    try:
        for kind, name in [("queue", q) for q in queues] + [("exchange", x) for x in exchanges]:
            channel = await connection.channel()  # one per delete: a failure closes it
            try:
                if kind == "queue":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            except Exception as exc:
                warnings.warn(f"could not delete {kind} {name}: {exc!r}", stacklevel=1)
            finally:
                with suppress(Exception):
                    await channel.close()
    finally:
        await connection.close()


@contextmanager
def running_stack(
    root: Path, *, bus_url: str = AMQP_URL, extra_env: Mapping[str, str] | None = None
) -> Iterator[Stack]:
    """Yields a Stack; at the end stops every process still running, asserts each exited
    with 0 (SIGTERM is a clean stop) and deletes the stack's RabbitMQ objects."""
    stack = Stack(root, bus_url=bus_url, extra_env=dict(extra_env or {}))
    try:
        yield stack
    finally:
        codes = stack.stop_all()
        stack.delete_bus_objects()
    unclean = {n: c for n, c in codes.items() if c != 0}
    assert not unclean, f"unclean exits {unclean}:\n{stack.all_output()[-20000:]}"
