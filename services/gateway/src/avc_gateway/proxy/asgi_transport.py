"""A streaming in-process httpx transport: requests go straight to an ASGI app, no network.

httpx's own `ASGITransport` runs the app to the end and hands back the whole body, which would
hold a 5 MiB chunk (or a whole video) in memory. This transport runs the app in its own task
and hands the response over while the app produces it, through a small bounded queue, so memory
stays flat and a slow reader slows the app down (backpressure), as over a socket.

It behaves like an ASGI server in the ways that matter to the proxy:
- the request body is streamed into `receive()` chunk by chunk;
- `receive()` answers `http.disconnect` once the response is complete or its reader went away
  (closed the response early); what the app sends after that is dropped;
- an exception from the request body (the gateway's client went away mid-upload) is raised to
  the caller and reported to the app as `http.disconnect`;
- an app exception before the response starts is raised by `handle_async_request`, one after
  it started is raised while reading the body (as `httpx.RemoteProtocolError` unless
  `raise_app_exceptions`); the read timeout of the request applies to every wait for the app.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

import httpx
from starlette.types import ASGIApp, Message

from avc_common.logging import get_logger

log = get_logger(__name__)

_END: Final = object()
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


@dataclass(frozen=True)
class _Failed:
    exc: BaseException


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Sends requests to `app` in-process, streaming both bodies (see the module doc)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        client: tuple[str, int] = ("127.0.0.1", 0),
        root_path: str = "",
        max_queued_chunks: int = 4,
        raise_app_exceptions: bool = True,
    ) -> None:
        self.app = app
        self.client = client
        self.root_path = root_path
        self.max_queued_chunks = max(1, max_queued_chunks)
        self.raise_app_exceptions = raise_app_exceptions
        # Apps may keep running after their response (background tasks): kept until done.
        self._tasks: set[asyncio.Task[None]] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        exchange = _Exchange(self, request)
        return await exchange.start()

    def _track(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Cancels app tasks still running (the apps themselves are closed by their lifespans)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Exchange:
    """One request/response between httpx and the app."""

    def __init__(self, transport: StreamingASGITransport, request: httpx.Request) -> None:
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("StreamingASGITransport needs an async request body")
        self.transport = transport
        self.request = request
        timeouts = request.extensions.get("timeout", {})
        self.read_timeout: float | None = timeouts.get("read")
        self._body = request.stream.__aiter__()
        self._body_done = False
        self._queue: asyncio.Queue[object] = asyncio.Queue(transport.max_queued_chunks)
        self._started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._response_started = False
        self._response_complete = False
        self._reader_gone = False
        # Set when the response is complete or its reader went away: `http.disconnect` from then.
        self._finished = asyncio.Event()
        self._deadline: asyncio.Timeout | None = None
        self._receiving = asyncio.Lock()

    # -- the ASGI side ---------------------------------------------------------------------

    def _scope(self) -> dict[str, object]:
        url = self.request.url
        # httpx's `target` extension, as its own transports honour it: the path sent as given
        # (httpx normalises `.`/`..` segments in URLs), decoded for `path` as a server would.
        target: bytes = self.request.extensions.get("target", url.raw_path)
        raw_path, _, query = target.partition(b"?")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": self.request.method,
            "headers": [(k.lower(), v) for k, v in self.request.headers.raw],
            "scheme": url.scheme,
            "path": unquote(raw_path.decode("latin-1")),
            "raw_path": raw_path,
            "query_string": query,
            "server": (url.host, url.port or _DEFAULT_PORTS.get(url.scheme, 80)),
            "client": self.transport.client,
            "root_path": self.transport.root_path,
        }

    async def receive(self) -> Message:
        # Serialized: Starlette may wait for a disconnect while the route reads the body.
        async with self._receiving:
            return await self._receive()

    async def _receive(self) -> Message:
        if not self._body_done:
            try:
                chunk = b""
                while not chunk:
                    chunk = bytes(await self._body.__anext__())
            except StopAsyncIteration:
                self._body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
            except Exception as exc:
                # The body's source failed (the gateway's client left): whoever waits for the
                # response gets the exception, the app a disconnect, as a server would tell it.
                self._body_done = True
                if self._started.done():
                    self._abandon(failure=exc)
                else:
                    self._abandon()
                    self._started.set_exception(exc)
                return {"type": "http.disconnect"}
            self._progress()
            return {"type": "http.request", "body": chunk, "more_body": True}
        await self._finished.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self._reader_gone:
            return  # like a server once its client has gone
        kind = message["type"]
        if kind == "http.response.start":
            if self._response_started:
                raise RuntimeError("the ASGI app sent http.response.start twice")
            self._response_started = True
            headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", ())]
            if not self._started.done():
                self._started.set_result((int(message["status"]), headers))
        elif kind == "http.response.body":
            if not self._response_started or self._response_complete:
                raise RuntimeError("the ASGI app sent a body outside of a response")
            body = message.get("body", b"")
            if body and self.request.method != "HEAD":
                await self._queue.put(bytes(body))
            if not message.get("more_body", False):
                self._response_complete = True
                self._finished.set()
                await self._queue.put(_END)

    async def run(self, app: ASGIApp) -> None:
        try:
            await app(self._scope(), self.receive, self.send)
        except asyncio.CancelledError:
            stopped = httpx.ReadError("the in-process service was stopped", request=self.request)
            if self._started.done():
                self._abandon(failure=stopped)
            else:
                self._abandon()
                self._started.set_exception(stopped)
            raise
        except Exception as exc:
            await self._fail(exc)
        else:
            # Unfinished is normal when the reader left early (the app saw the disconnect).
            if not self._response_complete and not self._reader_gone:
                await self._fail(RuntimeError("the ASGI app returned without a complete response"))
        finally:
            self._finished.set()

    async def _fail(self, exc: Exception) -> None:
        """Hands an app failure to whoever waits for the response (or logs it if nobody does)."""
        reported: BaseException = exc
        if not self.transport.raise_app_exceptions:
            log.error("in_process_app_failed", exc_type=type(exc).__name__, exc_info=exc)
            reported = httpx.RemoteProtocolError(
                f"the in-process service failed: {type(exc).__name__}", request=self.request
            )
            reported.__cause__ = exc
        if not self._started.done():
            self._started.set_exception(reported)
        elif self._response_started and not self._response_complete and not self._reader_gone:
            await self._queue.put(_Failed(reported))
        elif self.transport.raise_app_exceptions:
            log.error("in_process_app_failed", exc_type=type(exc).__name__, exc_info=exc)

    # -- the httpx side --------------------------------------------------------------------

    def _progress(self) -> None:
        """The app is moving: the read timeout counts from now (an idle timeout, as httpcore's)."""
        if self._deadline is not None and self.read_timeout is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + self.read_timeout)

    def _abandon(self, failure: BaseException | None = None) -> None:
        """Nobody will read the rest of the response: the app sees a disconnect and what it
        sends is dropped. With `failure`, a reader still waiting gets it raised instead."""
        if not self._reader_gone:
            self._reader_gone = True
            self._finished.set()
            while not self._queue.empty():  # unblocks a `send` waiting on a full queue
                self._queue.get_nowait()
        if failure is not None and self._queue.empty():
            self._queue.put_nowait(_Failed(failure))

    async def start(self) -> httpx.Response:
        task = asyncio.create_task(self.run(self.transport.app), name="in-process-request")
        self.transport._track(task)
        try:
            async with asyncio.timeout(self.read_timeout) as self._deadline:
                status, headers = await self._started
        except TimeoutError as exc:
            if self._deadline is None or not self._deadline.expired():
                raise  # the app's own TimeoutError
            self._abandon()
            task.cancel()
            raise httpx.ReadTimeout(
                "the in-process service did not answer in time", request=self.request
            ) from exc
        except BaseException:
            self._abandon()
            raise
        finally:
            self._deadline = None
        return httpx.Response(
            status,
            headers=headers,
            stream=_ResponseStream(self, task),
            request=self.request,
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def chunks(self, task: asyncio.Task[None]) -> AsyncIterator[bytes]:
        while True:
            try:
                async with asyncio.timeout(self.read_timeout):
                    item = await self._queue.get()
            except TimeoutError as exc:
                self._abandon()
                task.cancel()
                raise httpx.ReadTimeout(
                    "the in-process service stopped sending", request=self.request
                ) from exc
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            assert isinstance(item, bytes)
            yield item


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, exchange: _Exchange, task: asyncio.Task[None]) -> None:
        self._exchange = exchange
        self._task = task

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._exchange.chunks(self._task):
            yield chunk

    async def aclose(self) -> None:
        self._exchange._abandon()
