"""The streaming in-process transport: bodies flow both ways without being buffered, and
disconnects, app failures and timeouts behave as they would over a socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from avc_gateway.proxy import StreamingASGITransport

ASGIApp = Any


def client(app: ASGIApp, **options: Any) -> httpx.AsyncClient:
    timeout = options.pop("timeout", 5.0)
    return httpx.AsyncClient(
        transport=StreamingASGITransport(app, **options),
        base_url="http://svc.internal",
        timeout=timeout,
    )


async def start(send: Send, status: int = 200, headers: list[Any] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})


async def test_response_chunks_arrive_while_the_app_is_still_producing() -> None:
    released = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await released.wait()  # the reader must get "first" before this is set
        await send({"type": "http.response.body", "body": b"second", "more_body": False})

    async with client(app) as c, c.stream("GET", "/") as response:
        chunks = response.aiter_raw()
        assert await chunks.__anext__() == b"first"
        released.set()
        assert [chunk async for chunk in chunks] == [b"second"]


async def test_a_reader_that_does_not_read_holds_the_app_back() -> None:
    sent = 0

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        nonlocal sent
        await start(send)
        for _ in range(100):
            await send({"type": "http.response.body", "body": b"x" * 1024, "more_body": True})
            sent += 1
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with client(app, max_queued_chunks=4) as c, c.stream("GET", "/") as response:
        await asyncio.sleep(0.05)
        assert sent <= 5  # queue size + the one waiting to be queued
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    assert len(body) == 100 * 1024
    assert sent == 100


async def test_request_body_reaches_the_app_as_it_is_sent() -> None:
    received: list[bytes] = []
    got_first = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            received.append(message["body"])
            got_first.set()
            if not message["more_body"]:
                break
        await start(send)
        await send({"type": "http.response.body", "body": b"".join(received)})

    async def body() -> AsyncIterator[bytes]:
        yield b"one"
        await asyncio.wait_for(got_first.wait(), 5)  # the app has it before we send more
        yield b""
        yield b"two"

    async with client(app) as c:
        response = await c.post("/", content=body())
    assert response.content == b"onetwo"
    assert received == [b"one", b"two", b""]


async def test_scope_describes_the_request() -> None:
    seen: dict[str, Any] = {}

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.update(scope)
        await start(send, 204)
        await send({"type": "http.response.body"})

    async with client(app, client=("10.0.0.1", 999)) as c:
        response = await c.put("/a%20b/c?x=1&y=%2F", headers={"X-Thing": "1"})
    assert response.status_code == 204
    assert seen["method"] == "PUT"
    assert seen["path"] == "/a b/c"
    assert seen["raw_path"] == b"/a%20b/c"
    assert seen["query_string"] == b"x=1&y=%2F"
    assert seen["server"] == ("svc.internal", 80)
    assert seen["client"] == ("10.0.0.1", 999)
    assert (b"x-thing", b"1") in seen["headers"]


async def test_head_responses_have_no_body() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start(send, headers=[(b"content-length", b"4")])
        await send({"type": "http.response.body", "body": b"data"})

    async with client(app) as c:
        response = await c.head("/")
    assert response.headers["content-length"] == "4"
    assert response.content == b""


async def test_closing_early_tells_the_app_the_client_left() -> None:
    told: list[str] = []
    done = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "http.request"
        await start(send)
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        told.append((await receive())["type"])  # blocks until the reader goes away
        # What the app still sends is dropped, without blocking it.
        for _ in range(20):
            await send({"type": "http.response.body", "body": b"b", "more_body": True})
        done.set()

    async with client(app) as c:
        async with c.stream("GET", "/") as response:
            async for _ in response.aiter_raw():
                break
        await asyncio.wait_for(done.wait(), 5)
    assert told == ["http.disconnect"]


async def test_receive_reports_a_disconnect_after_the_response_is_complete() -> None:
    told: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await start(send)
        await send({"type": "http.response.body", "body": b"ok"})
        told.append((await receive())["type"])

    async with client(app) as c:
        response = await c.get("/")
    assert response.content == b"ok"
    await asyncio.sleep(0)
    assert told == ["http.disconnect"]


async def test_work_after_the_response_does_not_delay_it() -> None:
    finished = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"ok"})
        await asyncio.sleep(0.2)  # e.g. a background task
        finished.set()

    async with client(app) as c:
        response = await asyncio.wait_for(c.get("/"), 0.15)
        assert response.content == b"ok"
        assert not finished.is_set()
        await asyncio.wait_for(finished.wait(), 5)


async def test_a_failing_request_body_is_raised_and_the_app_sees_a_disconnect() -> None:
    told: list[str] = []
    done = asyncio.Event()

    class Gone(Exception):
        pass

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        told.append((await receive())["type"])
        told.append((await receive())["type"])
        done.set()

    async def body() -> AsyncIterator[bytes]:
        yield b"part"
        raise Gone()

    async with client(app) as c:
        with pytest.raises(Gone):
            await c.post("/", content=body())
    await asyncio.wait_for(done.wait(), 5)
    assert told == ["http.request", "http.disconnect"]


async def _fails_before_answering(scope: Scope, receive: Receive, send: Send) -> None:
    raise ValueError("boom")


async def test_app_failure_before_the_response_is_raised() -> None:
    async with client(_fails_before_answering) as c:
        with pytest.raises(ValueError, match="boom"):
            await c.get("/")


async def test_app_failure_before_the_response_as_a_protocol_error() -> None:
    async with client(_fails_before_answering, raise_app_exceptions=False) as c:
        with pytest.raises(httpx.RemoteProtocolError) as info:
            await c.get("/")
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("raise_app_exceptions", [True, False])
async def test_app_failure_mid_body_is_raised_to_the_reader(raise_app_exceptions: bool) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise ValueError("mid-body")

    expected = ValueError if raise_app_exceptions else httpx.RemoteProtocolError
    options = {"raise_app_exceptions": raise_app_exceptions}
    async with client(app, **options) as c, c.stream("GET", "/") as response:
        assert response.status_code == 200
        with pytest.raises(expected):
            await response.aread()


async def test_an_app_that_returns_without_answering_is_a_protocol_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    async with client(app, raise_app_exceptions=False) as c:
        with pytest.raises(httpx.RemoteProtocolError):
            await c.get("/")


async def test_an_app_that_stops_halfway_is_a_protocol_error() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"half", "more_body": True})

    async with client(app, raise_app_exceptions=False) as c, c.stream("GET", "/") as response:
        with pytest.raises(httpx.RemoteProtocolError):
            await response.aread()


async def test_read_timeout_before_the_response_starts() -> None:
    cancelled = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with client(app, timeout=httpx.Timeout(5.0, read=0.1)) as c:
        with pytest.raises(httpx.ReadTimeout):
            await c.get("/")
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_read_timeout_between_chunks() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await asyncio.sleep(10)

    timeout = httpx.Timeout(5.0, read=0.1)
    async with client(app, timeout=timeout) as c, c.stream("GET", "/") as response:
        with pytest.raises(httpx.ReadTimeout):
            await response.aread()


async def test_the_read_timeout_is_an_idle_timeout_while_the_body_flows() -> None:
    """A long upload is fine as long as it keeps moving (as with httpcore over a socket)."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        size = 0
        while True:
            message = await receive()
            size += len(message["body"])
            if not message["more_body"]:
                break
        await start(send)
        await send({"type": "http.response.body", "body": str(size).encode()})

    async def slow_body() -> AsyncIterator[bytes]:
        for _ in range(6):
            await asyncio.sleep(0.05)
            yield b"x" * 10

    async with client(app, timeout=httpx.Timeout(5.0, read=0.15)) as c:
        response = await c.post("/", content=slow_body())
    assert response.content == b"60"


async def test_the_apps_own_timeout_error_is_not_a_read_timeout() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise TimeoutError("the app's own")

    async with client(app) as c:
        with pytest.raises(TimeoutError, match="the app's own"):
            await c.get("/")


async def test_aclose_cancels_what_is_still_running() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"ok"})
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    transport = StreamingASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
        await c.get("/")
        await asyncio.wait_for(started.wait(), 5)
    # Closing the client closed the transport.
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_a_fastapi_app_round_trip() -> None:
    app = FastAPI()

    @app.post("/size")
    async def size(request: Request) -> dict[str, int]:
        total = 0
        async for part in request.stream():
            total += len(part)
        return {"size": total}

    @app.get("/bytes/{n}")
    async def data(n: int) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for _ in range(n):
                yield b"z" * 1000

        return StreamingResponse(body(), media_type="application/octet-stream")

    async with client(app) as c:
        posted = await c.post("/size", content=b"q" * 3_000_000)
        fetched = await c.get("/bytes/500")
    assert posted.json() == {"size": 3_000_000}
    assert fetched.content == b"z" * 500_000


async def test_concurrent_receives_do_not_break_the_body() -> None:
    """Starlette's StreamingResponse waits for a disconnect while the route may still read
    the body: both call receive() at once."""
    got: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        got.extend(await asyncio.gather(receive(), receive(), receive()))
        await start(send)
        await send({"type": "http.response.body", "body": b"ok"})

    async def body() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    async with client(app) as c:
        response = await c.post("/", content=body())
    assert response.content == b"ok"
    assert sorted(m["body"] for m in got) == [b"", b"a", b"b"]


async def test_a_body_failing_after_the_response_started_reaches_the_reader() -> None:
    class Gone(Exception):
        pass

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start(send)
        await send({"type": "http.response.body", "body": b"early", "more_body": True})
        while (await receive())["type"] != "http.disconnect":
            pass

    async def body() -> AsyncIterator[bytes]:
        yield b"part"
        await asyncio.sleep(0.05)
        raise Gone()

    async with client(app) as c, c.stream("POST", "/", content=body()) as response:
        with pytest.raises(Gone):
            await response.aread()


async def test_protocol_misuse_by_the_app_is_reported() -> None:
    messages: list[Message] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.body", "body": b"no start"})
        except RuntimeError as exc:
            messages.append({"type": str(exc)})
            raise

    async with client(app) as c:
        with pytest.raises(RuntimeError, match="outside of a response"):
            await c.get("/")
    assert messages
