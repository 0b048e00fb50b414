"""The proxy's HTTP/1.1 pool to one service (`ServicePool` on `AsyncioBackend`), against small
raw TCP servers that count connections and misbehave on purpose."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import httpx
import pytest
import trustme

from avc_gateway.proxy.pool import ServicePool

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Server:
    url: str
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    """Reads one request's head and its Content-Length body (None at EOF)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return head


def _answer(body: bytes = b"ok", *, close: bool = False, status: bytes = b"200 OK") -> bytes:
    extra = b"Connection: close\r\n" if close else b""
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n%s" % (status, len(body), extra, body)


@asynccontextmanager
async def serve(
    respond: Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    *,
    tls: ssl.SSLContext | None = None,
) -> AsyncIterator[Server]:
    server = Server(url="")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        server.connections += 1
        server.open_now += 1
        server.most_open = max(server.most_open, server.open_now)
        try:
            await respond(server, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            server.open_now -= 1
            writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()


async def keep_alive(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    """Answers every request on the connection."""
    while (head := await _read_request(reader)) is not None:
        server.requests.append(head)
        w.write(_answer())
        await w.drain()


def request(url: str, method: str = "GET", **kwargs: object) -> httpx.Request:
    timeout = kwargs.pop("timeout", httpx.Timeout(5.0))
    assert isinstance(timeout, httpx.Timeout)
    return httpx.Request(method, url, extensions={"timeout": timeout.as_dict()}, **kwargs)  # type: ignore[arg-type]


async def fetch(pool: ServicePool, url: str, **kwargs: object) -> tuple[int, bytes]:
    response = await pool.handle_async_request(request(url, **kwargs))
    try:
        return response.status_code, await response.aread()
    finally:
        await response.aclose()


async def test_connections_are_kept_alive_and_reused() -> None:
    async with serve(keep_alive) as server:
        pool = ServicePool(httpx.URL(server.url))
        for _ in range(5):
            assert await fetch(pool, f"{server.url}/x") == (200, b"ok")
        assert pool.idle_connections == 1
        await pool.aclose()
    assert server.connections == 1
    assert len(server.requests) == 5


async def test_concurrent_requests_open_at_most_max_connections() -> None:
    async def slow(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await _read_request(reader) is not None:
            await asyncio.sleep(0.05)
            w.write(_answer())
            await w.drain()

    async with serve(slow) as server:
        pool = ServicePool(httpx.URL(server.url), max_connections=2)
        results = await asyncio.gather(*(fetch(pool, f"{server.url}/") for _ in range(8)))
        await pool.aclose()
    assert all(r == (200, b"ok") for r in results)
    assert server.most_open <= 2
    assert server.connections == 2


async def test_waiting_too_long_for_a_connection_is_a_pool_timeout() -> None:
    hold = asyncio.Event()

    async def stuck(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await hold.wait()

    async with serve(stuck) as server:
        pool = ServicePool(httpx.URL(server.url), max_connections=1)
        first = asyncio.create_task(fetch(pool, f"{server.url}/"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await fetch(pool, f"{server.url}/", timeout=httpx.Timeout(5.0, pool=0.1))
        first.cancel()
        hold.set()
        await asyncio.gather(first, return_exceptions=True)
        await pool.aclose()


async def test_a_connection_the_service_closed_is_not_reused() -> None:
    async def once(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        w.write(_answer())  # keep-alive announced, then closed anyway (a restart, a timeout)
        await w.drain()

    async with serve(once) as server:
        pool = ServicePool(httpx.URL(server.url))
        assert await fetch(pool, f"{server.url}/") == (200, b"ok")
        await asyncio.sleep(0.05)  # the close reaches the gateway's event loop
        assert await fetch(pool, f"{server.url}/") == (200, b"ok")
        await pool.aclose()
    assert server.connections == 2


async def test_connection_close_and_expiry_are_honoured() -> None:
    async def closing(
        server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await _read_request(reader)
        w.write(_answer(close=True))
        await w.drain()

    async with serve(closing) as server:
        pool = ServicePool(httpx.URL(server.url))
        for _ in range(3):
            assert await fetch(pool, f"{server.url}/") == (200, b"ok")
        assert pool.idle_connections == 0
        await pool.aclose()
    assert server.connections == 3

    async with serve(keep_alive) as server:
        pool = ServicePool(httpx.URL(server.url), keepalive_expiry=0.05)
        await fetch(pool, f"{server.url}/")
        await asyncio.sleep(0.1)
        await fetch(pool, f"{server.url}/")
        await pool.aclose()
    assert server.connections == 2


async def test_a_response_closed_before_its_end_gives_its_connection_up() -> None:
    async def big(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while await _read_request(reader) is not None:
            w.write(_answer(b"x" * 1_000_000))
            await w.drain()

    async with serve(big) as server:
        pool = ServicePool(httpx.URL(server.url), max_connections=1)
        response = await pool.handle_async_request(request(f"{server.url}/"))
        async for _ in response.aiter_raw():
            break
        await response.aclose()
        await response.aclose()  # twice is harmless: the slot is released once
        # The one slot is free again, on a new connection (the old one had unread data).
        status, body = await fetch(pool, f"{server.url}/")
        await pool.aclose()
    assert (status, len(body)) == (200, 1_000_000)
    assert server.connections == 2


async def test_an_early_answer_during_an_upload_is_returned() -> None:
    """The service refuses a large body before reading it (413) and closes the connection."""

    async def refuse(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        w.write(_answer(b"too large", close=True, status=b"413 Payload Too Large"))
        await w.drain()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(200):
            yield b"z" * 65536

    async with serve(refuse) as server:
        pool = ServicePool(httpx.URL(server.url))
        req = request(f"{server.url}/", "POST", content=body())
        response = await pool.handle_async_request(req)
        content = await response.aread()
        await response.aclose()
        await pool.aclose()
    assert (response.status_code, content) == (413, b"too large")


async def test_nothing_listening_is_a_connect_error() -> None:
    async with serve(keep_alive) as server:
        url = server.url
    pool = ServicePool(httpx.URL(url), retries=1)
    with pytest.raises(httpx.ConnectError):
        await fetch(pool, f"{url}/")
    await pool.aclose()


async def test_no_answer_in_time_is_a_read_timeout() -> None:
    async def silent(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(5)

    async with serve(silent) as server:
        pool = ServicePool(httpx.URL(server.url))
        with pytest.raises(httpx.ReadTimeout):
            await fetch(pool, f"{server.url}/", timeout=httpx.Timeout(5.0, read=0.1))
        await pool.aclose()


async def test_an_invalid_answer_is_a_protocol_error() -> None:
    async def garbage(
        server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter
    ) -> None:
        await _read_request(reader)
        w.write(b"SPDY/9 nonsense\r\n\r\n")
        await w.drain()

    async with serve(garbage) as server:
        pool = ServicePool(httpx.URL(server.url))
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(pool, f"{server.url}/")
        await pool.aclose()


async def test_a_body_cut_short_is_a_protocol_error() -> None:
    async def short(server: Server, reader: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
        await w.drain()

    async with serve(short) as server:
        pool = ServicePool(httpx.URL(server.url))
        with pytest.raises(httpx.RemoteProtocolError):
            await fetch(pool, f"{server.url}/")
        await pool.aclose()


async def test_only_its_own_origin_and_not_after_close() -> None:
    async with serve(keep_alive) as server:
        pool = ServicePool(httpx.URL(server.url))
        with pytest.raises(httpx.UnsupportedProtocol):
            await fetch(pool, "http://elsewhere.example/")
        await pool.aclose()
        with pytest.raises(httpx.ConnectError):
            await fetch(pool, f"{server.url}/")
    with pytest.raises(ValueError, match="scheme"):
        ServicePool(httpx.URL("ftp://example.com"))


async def test_https_services() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async with serve(keep_alive, tls=server_ctx) as server:
        pool = ServicePool(httpx.URL(server.url), ssl_context=client_ctx)
        for _ in range(2):
            assert await fetch(pool, f"{server.url}/secure") == (200, b"ok")
        await pool.aclose()
        untrusting = ServicePool(httpx.URL(server.url))
        with pytest.raises(httpx.ConnectError):
            await fetch(untrusting, f"{server.url}/")
        await untrusting.aclose()
    # One kept-alive connection; the refused handshake never reached the handler.
    assert server.connections == 1


async def test_large_bodies_both_ways_with_backpressure() -> None:
    size = 20 * 1024 * 1024

    async def echo_size(server: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        head = await r.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        received = 0
        while received < length:
            received += len(await r.read(65536))
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        block = b"r" * 65536
        for _ in range(size // len(block)):
            w.write(block)
            await w.drain()
        server.requests.append(str(received).encode())

    async def body() -> AsyncIterator[bytes]:
        block = b"u" * 65536
        for _ in range(size // len(block)):
            yield block

    async with serve(echo_size) as server:
        pool = ServicePool(httpx.URL(server.url))
        req = request(
            f"{server.url}/", "POST", content=body(), headers={"content-length": str(size)}
        )
        response = await pool.handle_async_request(req)
        got = 0
        async for chunk in response.aiter_raw():
            got += len(chunk)
            if got < 1024 * 1024:
                await asyncio.sleep(0.01)  # a slow reader: the service must wait, not us buffer
        await response.aclose()
        await pool.aclose()
    assert got == size
    assert server.requests == [str(size).encode()]
