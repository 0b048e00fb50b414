"""The HTTP transport to one service: a small keep-alive pool of httpcore HTTP/1.1 connections.

Why not `httpx.AsyncHTTPTransport`: its pool (httpcore's) re-examines every connection for every
queued request each time a request starts or ends, and for each idle connection counts the
whole pool again; with the few dozen connections a busy gateway keeps to a service that is
quadratic work per request, plus a `poll()` system call per idle connection. This pool talks to
a single origin, so it needs none of that: a stack of idle connections (the most recently used
first), a semaphore bounding those in use, and the checks on the one connection it takes. The
HTTP/1.1 protocol work stays httpcore's (`AsyncHTTP11Connection`), on `AsyncioBackend`.

Semantics kept from httpx: connect / read / write / pool timeouts from the request's
`timeout` extension, one retry when a connection cannot be made (nothing has been sent then),
httpcore errors raised as the matching httpx errors, the response body streamed and the
connection returned to the pool (or closed) when the response is closed.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Final

import httpcore
import httpx

from avc_gateway.proxy.network import AsyncioBackend

_DEFAULT_PORTS: Final = {b"http": 80, b"https": 443}

# Most specific first: the first match wins.
_ERRORS: Final[tuple[tuple[type[Exception], type[httpx.TransportError]], ...]] = (
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
)


@contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    """Raises httpcore's errors as httpx's (what the proxy and httpx users catch)."""
    try:
        yield
    except httpcore.ConnectionNotAvailable as exc:  # pragma: no cover - only idle ones are used
        raise httpx.ConnectError(str(exc), request=request) from exc
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc) or type(exc).__name__, request=request) from exc
        raise


class ServicePool(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections to one origin (see the module doc)."""

    def __init__(
        self,
        base_url: httpx.URL,
        *,
        max_connections: int = 512,
        max_keepalive_connections: int = 128,
        keepalive_expiry: float | None = 4.0,
        retries: int = 1,
        ssl_context: ssl.SSLContext | None = None,
        backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        scheme = base_url.raw_scheme
        if scheme not in _DEFAULT_PORTS:
            raise ValueError(f"unsupported scheme {base_url.scheme!r}")
        port = base_url.port or _DEFAULT_PORTS[scheme]
        self.origin = httpcore.Origin(scheme, base_url.raw_host, port)
        self._max_keepalive = max_keepalive_connections
        self._keepalive_expiry = keepalive_expiry
        self._retries = retries
        self._ssl_context = ssl_context or (
            ssl.create_default_context() if scheme == b"https" else None
        )
        self._backend = backend or AsyncioBackend()
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[httpcore.AsyncHTTP11Connection] = []
        self._closed = False

    @property
    def idle_connections(self) -> int:
        """How many connections wait for a request (for tests and metrics)."""
        return len(self._idle)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise httpx.ConnectError("the connection pool is closed", request=request)
        timeouts = request.extensions.get("timeout", {})
        url = request.url
        if (url.raw_scheme, url.raw_host, url.port or _DEFAULT_PORTS.get(url.raw_scheme)) != (
            self.origin.scheme,
            self.origin.host,
            self.origin.port,
        ):
            raise httpx.UnsupportedProtocol(f"this pool only serves {self.origin}", request=request)
        if not isinstance(request.stream, httpx.AsyncByteStream):
            raise TypeError("ServicePool needs an async request body")
        core_request = httpcore.Request(
            request.method,
            httpcore.URL(
                scheme=self.origin.scheme,
                host=self.origin.host,
                port=self.origin.port,
                # httpx's `target` extension: the path as given, not as httpx normalised it.
                target=request.extensions.get("target", url.raw_path),
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors(request):
            connection = await self._acquire(timeouts)
            try:
                response = await connection.handle_async_request(core_request)
            except BaseException:
                self._release(connection)
                raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_PooledStream(self, connection, response, request),
            extensions=response.extensions,
        )

    async def _acquire(self, timeouts: dict[str, float | None]) -> httpcore.AsyncHTTP11Connection:
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise httpcore.PoolTimeout("no free connection to the service in time") from exc
        try:
            while self._idle:
                connection = self._idle.pop()
                if connection.is_idle() and not connection.has_expired():
                    return connection
                await connection.aclose()
            return await self._connect(timeouts.get("connect"))
        except BaseException:
            self._slots.release()
            raise

    async def _connect(self, limit: float | None) -> httpcore.AsyncHTTP11Connection:
        host = self.origin.host.decode("ascii")
        for attempt in range(self._retries + 1):
            try:
                stream = await self._backend.connect_tcp(host, self.origin.port, timeout=limit)
                if self._ssl_context is not None:
                    stream = await stream.start_tls(
                        self._ssl_context, server_hostname=host, timeout=limit
                    )
            except (httpcore.ConnectError, httpcore.ConnectTimeout):
                if attempt == self._retries:
                    raise
                continue
            return httpcore.AsyncHTTP11Connection(
                self.origin, stream, keepalive_expiry=self._keepalive_expiry
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _release(self, connection: httpcore.AsyncHTTP11Connection) -> None:
        """Takes a connection back: kept when it can serve another request, else closed."""
        self._slots.release()
        if not self._closed and connection.is_idle() and len(self._idle) < self._max_keepalive:
            self._idle.append(connection)
        elif not connection.is_closed():
            task = asyncio.get_running_loop().create_task(connection.aclose())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def aclose(self) -> None:
        """Closes the idle connections; those in use close when their response is closed."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            await connection.aclose()


class _PooledStream(httpx.AsyncByteStream):
    """The response body; closing it hands the connection back to the pool (exactly once)."""

    def __init__(
        self,
        pool: ServicePool,
        connection: httpcore.AsyncHTTP11Connection,
        response: httpcore.Response,
        request: httpx.Request,
    ) -> None:
        self._pool = pool
        self._connection: httpcore.AsyncHTTP11Connection | None = connection
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors(self._request):
            async for chunk in self._response.aiter_stream():
                yield chunk

    async def aclose(self) -> None:
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            with _httpx_errors(self._request):
                await self._response.aclose()
        finally:
            self._pool._release(connection)
