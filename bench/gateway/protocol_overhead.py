"""What the connection bounds cost per request: server CPU time, bounded vs uvicorn's protocol.

Serves a minimal ASGI app (a fixed 200) in a child process under `avcaption serve`'s server
configuration (`bounded`: avcaption.http_protocol) and under uvicorn's default httptools
protocol (`stock`), alternating rounds, and sends keep-alive GETs (and small POSTs with a body)
from this process over loopback. Prints the server process's CPU time per request (user +
system, from psutil), which depends far less on other load on the machine than throughput.

    .venv/bin/python bench/gateway/protocol_overhead.py [--requests 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] != "http":
        return
    while True:
        message = await receive()  # type: ignore[operator]
        if not message.get("more_body"):
            break
    await send(  # type: ignore[operator]
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


def serve(mode: str, port: int) -> None:
    import uvicorn

    from avcaption.server import server_config

    config = server_config(app, host="127.0.0.1", port=port, access_log=False)
    if mode == "stock":
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off"
        )
    else:
        config.lifespan = "off"
    uvicorn.Server(config).run()


GET = b"GET /x HTTP/1.1\r\nHost: bench\r\nX-API-Key: avc_0123456789abcdef\r\n\r\n"
POST = b"POST /x HTTP/1.1\r\nHost: bench\r\nContent-Length: 300\r\n\r\n" + b"p" * 300


async def load(port: int, requests: int, concurrency: int) -> None:
    per_connection = requests // concurrency

    async def one() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in range(per_connection):
            writer.write(POST if i % 4 == 0 else GET)
            await reader.readuntil(b"\r\n\r\nok")
        writer.close()

    await asyncio.gather(*(one() for _ in range(concurrency)))


def round_cpu_us(mode: str, requests: int, concurrency: int) -> float:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", mode, "--port", str(port)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if not k.startswith("AVC_")},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{mode} server did not start") from None
                time.sleep(0.05)
        server = psutil.Process(proc.pid)
        asyncio.run(load(port, 1000, concurrency))  # warm up
        before = server.cpu_times()
        asyncio.run(load(port, requests, concurrency))
        after = server.cpu_times()
        cpu = (after.user - before.user) + (after.system - before.system)
        return cpu / requests * 1e6
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return
    results: dict[str, list[float]] = {"stock": [], "bounded": []}
    for _ in range(args.rounds):
        for mode in results:
            us = round_cpu_us(mode, args.requests, args.concurrency)
            results[mode].append(us)
            print(f"  {mode:8} {us:6.1f} µs CPU per request")
    stock = statistics.median(results["stock"])
    bounded = statistics.median(results["bounded"])
    print(
        f"median: stock {stock:.1f} µs, bounded {bounded:.1f} µs per request "
        f"({(bounded - stock) / stock * 100:+.1f}%)"
    )


if __name__ == "__main__":
    main()
