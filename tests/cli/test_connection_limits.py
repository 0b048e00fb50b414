"""`avcaption serve`'s connection bounds (`avcaption.http_protocol`): the server configuration
`serve` uses, run in-process on a local port with small limits, spoken to over raw sockets (a
hostile client does not behave like an HTTP library).

Each answer the server makes by itself is in the public error shape with a request id (also in
`X-Request-ID`), and the connection is closed. The waits below are upper bounds far above the
configured timeouts, never measurements (the figures are in bench/gateway/hostile_clients.py).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from avcaption.http_protocol import ConnectionLimits
from avcaption.server import server_config

LIMITS = ConnectionLimits(
    max_head_bytes=8 * 1024, header_timeout=0.5, body_timeout=0.5, max_connections=8
)
WITHIN = 10.0  # seconds: "closed in the end", far above every timeout configured here


class App:
    """Answers the size of the body it read; remembers disconnects."""

    def __init__(self) -> None:
        self.disconnected = asyncio.Event()
        self.requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        self.requests += 1
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected.set()
                return
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = json.dumps({"size": size}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def running(app: App, limits: ConnectionLimits = LIMITS) -> AsyncIterator[int]:
    port = free_port()
    config = server_config(app, host="127.0.0.1", port=port, access_log=False, limits=limits)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


async def exchange(port: int, *parts: bytes, pause: float = 0.0) -> bytes:
    """Sends `parts` (with `pause` seconds between them), then reads until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for i, part in enumerate(parts):
            if i and pause:
                await asyncio.sleep(pause)
            writer.write(part)
            await writer.drain()
        async with asyncio.timeout(WITHIN):
            return await reader.read()  # to EOF: the server must close
    finally:
        writer.close()


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, json.loads(body) if body else None


def assert_error(raw: bytes, status: int, code: str) -> None:
    got, headers, body = parse(raw)
    assert got == status, raw[:500]
    assert set(body) == {"error", "code", "request_id"}, body
    assert body["code"] == code
    assert body["request_id"] == headers["x-request-id"]
    assert body["request_id"].startswith("req_")
    assert headers["connection"] == "close"


async def test_headers_over_the_cap_get_431_and_the_app_never_runs() -> None:
    app = App()
    async with running(app) as port:
        big = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
        many = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: bbbbbbbbbbbbbbbbbbbb\r\n" * 2000 + b"\r\n"
        assert_error(await exchange(port, big), 431, "request_header_fields_too_large")
        assert_error(await exchange(port, many), 431, "request_header_fields_too_large")
    assert app.requests == 0


async def test_a_100_kb_path_gets_414() -> None:
    app = App()
    async with running(app) as port:
        raw = b"GET /" + b"p" * 100_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        assert_error(await exchange(port, raw), 414, "uri_too_long")
    assert app.requests == 0


async def test_a_malformed_request_line_gets_400_in_the_error_shape() -> None:
    async with running(App()) as port:
        assert_error(await exchange(port, b"GET / HTTP/9\x00\r\n\r\n"), 400, "bad_request")
        assert_error(await exchange(port, b"\x16\x03\x01 not http\r\n\r\n"), 400, "bad_request")


async def test_headers_sent_too_slowly_get_408_and_the_connection_closes() -> None:
    async with running(App()) as port:
        # Never finished: the server must not wait for ever.
        raw = await exchange(
            port, b"GET / HTTP/1.1\r\n", b"Host: x\r\n", b"X-Slow: 1\r\n", pause=0.2
        )
        assert_error(raw, 408, "request_timeout")


async def test_a_connection_that_sends_nothing_is_closed() -> None:
    async with running(App()) as port:
        assert_error(await exchange(port), 408, "request_timeout")


async def test_a_body_that_stops_arriving_gets_408_and_the_app_a_disconnect() -> None:
    app = App()
    async with running(app) as port:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        raw = await exchange(port, head + b"x" * 100)
        assert_error(raw, 408, "request_timeout")
        async with asyncio.timeout(WITHIN):
            await app.disconnected.wait()


async def test_a_slow_but_moving_body_and_keep_alive_still_work() -> None:
    app = App()
    idle_only = ConnectionLimits(
        max_head_bytes=8 * 1024, header_timeout=0.5, body_timeout=0.5, body_min_rate=0
    )
    async with running(app, idle_only) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
            for _ in range(6):  # each byte well within the idle limit, the whole beyond it
                await asyncio.sleep(0.2)
                writer.write(b"y")
            await writer.drain()
            first = await reader.readuntil(b'{"size": 6}')
            assert first.startswith(b"HTTP/1.1 200")
            await asyncio.sleep(0.2)  # kept alive: a second request on the same connection
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            second = await reader.readuntil(b'{"size": 0}')
            assert second.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()
    assert app.requests == 2


async def test_connections_over_the_cap_get_503() -> None:
    limits = ConnectionLimits(
        max_head_bytes=8192, header_timeout=30, body_timeout=30, max_connections=3
    )
    async with running(App(), limits) as port:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        try:
            assert_error(
                await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
                503,
                "service_unavailable",
            )
        finally:
            for _, writer in held:
                writer.close()
        # Once they are gone, new connections are served again.
        async with asyncio.timeout(WITHIN):
            while True:
                raw = await exchange(
                    port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                if parse(raw)[0] == 200:
                    break
                await asyncio.sleep(0.05)


@pytest.mark.parametrize("value", ["0", "-1"])
def test_settings_refuse_nonsense(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from avc_common.config import Settings

    monkeypatch.setenv("AVC_HEADER_READ_TIMEOUT", value)
    with pytest.raises(ValidationError):
        Settings()


async def test_a_body_trickling_below_the_minimum_rate_gets_408() -> None:
    app = App()
    # A byte every 0.1 s: never idle for 0.5 s, but 10 B/s against a minimum of 500 B/s.
    async with running(app) as port:
        head = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(head)
            answer = asyncio.create_task(reader.read())
            async with asyncio.timeout(WITHIN):
                while not answer.done():
                    writer.write(b"z")
                    await asyncio.sleep(0.1)
            assert_error(answer.result(), 408, "request_timeout")
        finally:
            writer.close()
        async with asyncio.timeout(WITHIN):
            await app.disconnected.wait()


async def test_a_body_at_a_decent_rate_is_read_whole() -> None:
    app = App()
    async with running(app) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n")
            for _ in range(10):  # 2000 bytes over 1 s: twice the grace, above the rate
                writer.write(b"d" * 200)
                await asyncio.sleep(0.1)
            answer = await reader.readuntil(b'{"size": 2000}')
            assert answer.startswith(b"HTTP/1.1 200")
        finally:
            writer.close()
