"""uvicorn's httptools protocol with the bounds uvicorn does not have.

uvicorn (0.54, httptools parser) offers `limit_concurrency` (a plain-text 503 once N connections
*or* tasks exist), `timeout_keep_alive` (idle time *between* requests) and, for its h11 parser
only, `h11_max_incomplete_event_size`. With httptools there is no cap on the size of a request's
head (10 MB of headers were accepted, and the memory kept), no time limit on reading the head
(nor on a connection that never sends a byte), and none on a body that stops arriving: 250
slow connections stayed open for ever. This subclass adds, per connection:

- a cap on the request head (request line + headers): 414 `uri_too_long` when the request
  target alone is over it, else 431 `request_header_fields_too_large`;
- a time limit from the connection's start (or the end of the previous request) to the end of
  the head: 408 `request_timeout`, then the connection is closed;
- limits while the body is being read: no byte for `body_timeout`, or, after a first
  `body_timeout` of grace, fewer than `body_min_rate` bytes per second on average (as Apache's
  mod_reqtimeout `MinRate`: a body trickling one byte within every idle timeout is cut too);
  408 when no response has started, the connection closed in any case (the app sees a
  disconnect). Neither counts while the app is not reading (backpressure) or has not asked for
  the body of an `Expect: 100-continue` request;
- a cap on open connections per process: past it, a new connection gets 503
  `service_unavailable` and is closed before anything is read.

Those answers, and the 400 for a request the parser cannot read, are in the public error shape
with a fresh request id (also in `X-Request-ID`) and logged with it; the app never sees them.
The rest (parsing, keep-alive, pipelining, the ASGI cycle) is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from avc_common.logging import get_logger
from avc_common.web.request_id import new_request_id

log = get_logger("avcaption.http")

_CODES: Final = {
    400: "bad_request",
    408: "request_timeout",
    414: "uri_too_long",
    431: "request_header_fields_too_large",
    503: "service_unavailable",
}


# How long a refused connection's incoming bytes are still read and dropped before closing.
_LINGER_SECONDS: Final = 1.0


@dataclass(frozen=True)
class ConnectionLimits:
    """The bounds of every connection (`avc_common.config.Settings`, `AVC_*`)."""

    max_head_bytes: int = 32 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    # Past the first `body_timeout` seconds, a body must average this many bytes per second
    # (0: no minimum); stops a body trickling a byte within every idle timeout for ever.
    body_min_rate: float = 500.0
    max_connections: int = 1000


def error_bytes(status: int, message: str) -> bytes:
    """Returns a complete `Connection: close` HTTP/1.1 answer in the public error shape."""
    request_id = new_request_id()
    body = json.dumps(
        {"error": message, "code": _CODES.get(status, "error"), "request_id": request_id}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        f"x-request-id: {request_id}\r\n"
        "connection: close\r\n\r\n"
    )
    log.info("request_refused", status=status, request_id=request_id, reason=message)
    return head.encode("latin-1") + body


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` plus `limits` (see the module doc)."""

    limits: ConnectionLimits = ConnectionLimits()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._reading_head = True
        self._head_bytes = 0
        self._in_body = False
        # One timer per connection, for the earliest moment something is due from the client
        # (`_deadline`, None while nothing is: the app is working, or between requests, which
        # is uvicorn's keep-alive timer's). Moving the deadline later costs no new timer: the
        # timer fires, finds the deadline not reached yet and sets itself for it.
        self._deadline: float | None = None
        self._body_start = 0.0
        self._body_bytes = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._refused = False
        self._stopped_by: tuple[int, str] | None = None

    @classmethod
    def with_limits(cls, limits: ConnectionLimits) -> type[BoundedHttpToolsProtocol]:
        """Returns a subclass bound to `limits` (uvicorn instantiates the class it is given)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    # -- connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            self._refuse(503, "The server has too many open connections; retry shortly.")
            return
        self._expect_by(self.loop.time() + self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: dropped unread
        if self._reading_head:
            self._head_bytes += len(data)
            if self._deadline is None:  # the keep-alive wait is over: a new head starts
                self._expect_by(self.loop.time() + self.limits.header_timeout)
        elif self._in_body:
            self._body_bytes += len(data)
            self._deadline = self._body_deadline()  # only ever later: no new timer
        super().data_received(data)
        if self._reading_head and not self._refused and self.parser is not None:
            self._check_head_size()

    def _check_head_size(self) -> None:
        limit = self.limits.max_head_bytes
        if self._head_bytes > limit:
            self._refuse(431, f"The request line and headers must be at most {limit} bytes.")

    # -- parser callbacks ------------------------------------------------------------------

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        limit = self.limits.max_head_bytes
        if len(self.url) > limit:
            # Stops the parser before it buffers more of it (answered by send_400_response).
            self._stop_parsing(414, f"The request target must be at most {limit} bytes.")

    def on_headers_complete(self) -> None:
        limit = self.limits.max_head_bytes
        # The bytes read include any body after the head: only then are they counted exactly.
        if self._head_bytes > limit and self._exact_head_size() > limit:
            self._stop_parsing(431, f"The request line and headers must be at most {limit} bytes.")
        self._reading_head = False
        self._head_bytes = 0
        self._in_body = True
        self._body_start = self.loop.time()
        self._body_bytes = 0
        self._expect_by(self._body_start + self.limits.body_timeout)
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        self._disarm()  # the connection is the websocket protocol's from here
        self._in_body = False
        super().handle_websocket_upgrade()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._deadline = None  # nothing due from the client until its next request
        self._reading_head = True
        super().on_message_complete()

    # -- uvicorn's own answers -------------------------------------------------------------

    def _stop_parsing(self, status: int, message: str) -> None:
        self._stopped_by = (status, message)
        raise httptools.HttpParserError(message)

    def _exact_head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error (ours included: `_stop_parsing`)."""
        status, message = self._stopped_by or (400, "The request could not be parsed as HTTP/1.1.")
        self._refuse(status, message)

    # -- timers ----------------------------------------------------------------------------

    def _expect_by(self, deadline: float) -> None:
        """Something is due from the client by `deadline` (loop time)."""
        if self._timer is None or self._timer_at > deadline:
            self._disarm()
            self._timer_at = deadline
            self._timer = self.loop.call_at(deadline, self._timed_out)
        self._deadline = deadline

    def _body_deadline(self) -> float:
        """When the body is late: idle for `body_timeout` since its last byte, or behind the
        minimum rate (after a first `body_timeout` of grace)."""
        limits = self.limits
        idle = self.loop.time() + limits.body_timeout
        if limits.body_min_rate <= 0:
            return idle
        paced = self._body_start + limits.body_timeout + self._body_bytes / limits.body_min_rate
        return min(idle, paced)

    def _disarm(self) -> None:
        self._deadline = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.transport.is_closing() or self._refused:
            return
        now = self.loop.time()
        if now < deadline:
            self._expect_by(deadline)  # moved on since the timer was set
            return
        if self._reading_head:
            self._refuse(408, "The request headers did not arrive in time.")
        elif self._in_body:
            cycle = self.cycle
            if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
                # The app is not reading (backpressure), or has not asked for the body yet
                # (no `100 Continue` sent): not the client's fault.
                # A fresh start for the idle and rate budgets once it reads again.
                self._body_start, self._body_bytes = now, 0
                self._expect_by(now + self.limits.body_timeout)
                return
            started = cycle is not None and cycle.response_started
            if cycle is not None:
                cycle.disconnected = True  # the app's receive() answers http.disconnect
                cycle.message_event.set()
            if started:
                log.info("request_body_timeout", client=self.client)
                self.transport.close()
            else:
                self._refuse(408, "The request body did not arrive in time.")

    def _refuse(self, status: int, message: str) -> None:
        """Answers `status` in the error shape and closes the connection (once)."""
        if self._refused:
            return
        self._refused = True
        self._reading_head = self._in_body = False
        self._disarm()
        if self.cycle is not None:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if self.transport.is_closing():
            return
        self.transport.write(error_bytes(status, message))
        # A lingering close (as nginx's): closing now, with the client's bytes unread, would
        # reset the connection, often before the client has read the answer. Our side is shut
        # for writing, what still comes is dropped unread, and the connection closes shortly.
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self._timer = self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()
