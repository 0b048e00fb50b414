"""Hostile clients against the gateway process: huge headers and slow connections.

Runs the gateway (`avc_gateway.app:create_app`; `--target all`: every component, as `make run`;
embedded defaults, a fresh data dir) in its own process on 127.0.0.1 under two server
configurations, one after the other:

    bounded  `avcaption serve`'s own (avcaption.server.server_config: head cap, read timeouts,
             connection cap)
    stock    uvicorn's defaults (its httptools protocol, as before issue 10)

and against each measures

1. memory: the process's RSS before and after N requests each carrying a 10 MB header
   (sent one after the other), and the statuses they got;
2. slow connections: S connections at once, half sending a header line every second and never
   finishing the head (slowloris), half sending a head and 10 bytes of a 1000-byte body and then
   nothing; how many the server closed within the configured timeout (+1 s of slack), and how
   many were still open at the end of the observation window (timeout + 5 s).

Loopback only, bounded in time (about a minute per configuration).

    .venv/bin/python bench/gateway/hostile_clients.py [--header-requests 40] [--slow 250]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- the server process ----------------------------------------------------------------------


def serve(mode: str, port: int, timeout: float, target: str) -> None:
    """Runs in the child process: the gateway app under the chosen server configuration."""
    import uvicorn

    from avc_common.config import Settings
    from avc_common.logging import configure_logging
    from avcaption.components import COMPONENTS
    from avcaption.http_protocol import ConnectionLimits
    from avcaption.server import server_config

    settings = Settings(internal_secret="s" * 64, log_level="WARNING")  # type: ignore[arg-type]
    configure_logging(service="gateway", level="WARNING", json=True)
    app = COMPONENTS[target].create(settings)
    limits = ConnectionLimits(header_timeout=timeout, body_timeout=timeout)
    config = server_config(app, host="127.0.0.1", port=port, access_log=False, limits=limits)
    if mode == "stock":
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    uvicorn.Server(config).run()


@dataclass
class Server:
    mode: str
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def rss_mib(self) -> float:
        return psutil.Process(self.proc.pid).memory_info().rss / MiB


def start(mode: str, timeout: float, data_dir: Path, target: str) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    env["AVC_DATA_DIR"] = str(data_dir)
    args = ["--serve", mode, "--port", str(port), "--timeout", str(timeout), "--target", target]
    proc = subprocess.Popen(
        [sys.executable, __file__, *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return Server(mode, proc, port)
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{mode} server did not start")


# -- 1. huge headers -------------------------------------------------------------------------


async def huge_header_request(port: int, size: int) -> str:
    """Sends one request with a `size`-byte header; returns the status (or what happened)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def status_line() -> str:
        # Read while sending: a server that refuses answers before the header is complete.
        try:
            line = await reader.readline()
        except (ConnectionError, OSError):
            return "reset"
        return line.split()[1].decode() if line.startswith(b"HTTP/1.1") else "closed"

    answer = asyncio.create_task(status_line())
    try:
        writer.write(b"GET /api/v1/videos HTTP/1.1\r\nHost: bench\r\nX-Big: ")
        chunk = b"a" * MiB
        try:
            for _ in range(size // MiB):
                if answer.done():
                    break
                writer.write(chunk)
                await writer.drain()
            else:
                writer.write(b"\r\nConnection: close\r\n\r\n")
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server refused and closed while we were still sending
        async with asyncio.timeout(30):
            return await answer
    finally:
        answer.cancel()
        writer.close()


# -- 2. slow connections ---------------------------------------------------------------------


async def slow_connection(port: int, kind: str, window: float) -> float | None:
    """Holds one slow connection; returns when the server closed it (seconds after its last
    byte counted from the start), or None if still open at the end of `window`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        if kind == "header":
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n")
        else:
            writer.write(
                b"POST /api/v1/auth/login HTTP/1.1\r\nHost: bench\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n" + b'{"email": "'
            )
        await writer.drain()

        async def closed() -> None:
            while await reader.read(65536):
                pass

        async def trickle() -> None:
            i = 0
            while kind == "header":
                await asyncio.sleep(1)
                writer.write(f"X-Slow-{i}: 1\r\n".encode())
                await writer.drain()
                i += 1
            await asyncio.Event().wait()

        watcher = asyncio.create_task(closed())
        sender = asyncio.create_task(trickle())
        try:
            done, _ = await asyncio.wait(
                {watcher, sender}, timeout=window, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            sender.cancel()
            watcher.cancel()
        if done:
            return time.monotonic() - started
        return None
    except (ConnectionError, OSError):
        return time.monotonic() - started
    finally:
        writer.close()


async def slow_connections(port: int, count: int, window: float) -> list[float | None]:

    kinds = ["header" if i % 2 == 0 else "body" for i in range(count)]
    return await asyncio.gather(*(slow_connection(port, k, window) for k in kinds))


# -- the run ---------------------------------------------------------------------------------


def measure(mode: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="avc-hostile-") as tmp:
        server = start(mode, args.timeout, Path(tmp), args.target)
        try:
            before = server.rss_mib
            statuses: dict[str, int] = {}
            peak = before
            for _ in range(args.header_requests):
                status = asyncio.run(huge_header_request(server.port, args.header_mib * MiB))
                statuses[status] = statuses.get(status, 0) + 1
                peak = max(peak, server.rss_mib)
            after = server.rss_mib
            time.sleep(2)
            settled = server.rss_mib
            print(
                f"{mode:8} {args.header_requests} x {args.header_mib} MB headers: "
                f"RSS {before:.0f} -> {after:.0f} MiB (peak {peak:.0f}, 2 s later {settled:.0f}); "
                f"statuses {statuses}"
            )
            closes = asyncio.run(slow_connections(server.port, args.slow, args.timeout + 5))
            limit = args.timeout + 1
            within = sum(1 for c in closes if c is not None and c <= limit)
            late = sum(1 for c in closes if c is not None and c > limit)
            still_open = sum(1 for c in closes if c is None)
            print(
                f"{mode:8} {args.slow} slow connections (timeout {args.timeout:g} s): "
                f"{within} closed within {limit:g} s, {late} later, "
                f"{still_open} still open after {args.timeout + 5:g} s"
            )
        finally:
            server.proc.terminate()
            server.proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--header-requests", type=int, default=40)
    parser.add_argument("--header-mib", type=int, default=10)
    parser.add_argument("--slow", type=int, default=250)
    parser.add_argument("--timeout", type=float, default=5.0, help="header and body timeouts")
    parser.add_argument("--modes", default="bounded,stock")
    parser.add_argument("--target", default="gateway", help="gateway, or all (all-in-one)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.timeout, args.target)
        return
    for mode in args.modes.split(","):
        measure(mode, args)


if __name__ == "__main__":
    main()
