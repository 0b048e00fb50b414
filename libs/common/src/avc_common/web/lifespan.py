"""Runs an ASGI app's lifespan (startup/shutdown) without a server: for apps served in-process
(all-in-one mode) and for tests that talk to an app through `httpx.ASGITransport`, which does
not send lifespan events itself."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

from starlette.types import ASGIApp, Message


class LifespanError(RuntimeError):
    """The app reported `lifespan.startup.failed` / `lifespan.shutdown.failed`, or crashed."""


class LifespanManager:
    """`async with LifespanManager(app):` — startup on enter, shutdown on exit.

    The app's lifespan runs in its own task, so what it binds to the context (the log
    `service`) and the background tasks it starts stay apart from the caller's."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        state: dict[str, Any] | None = None,
        startup_timeout: float | None = 60.0,
        shutdown_timeout: float | None = 60.0,
    ) -> None:
        self.app = app
        # Lifespan state (ASGI "state" extension); requests to the app may be given a copy.
        self.state: dict[str, Any] = state if state is not None else {}
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._started = asyncio.Event()
        self._stopped = asyncio.Event()
        self._failure: str | None = None
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> Message:
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind.endswith(".failed"):
            self._failure = str(message.get("message") or kind)
        if kind.startswith("lifespan.startup."):
            self._started.set()
        elif kind.startswith("lifespan.shutdown."):
            self._stopped.set()

    async def _run(self) -> None:
        scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        await self.app(scope, self._receive, self._send)

    async def _wait(self, event: asyncio.Event, limit: float | None, phase: str) -> None:
        assert self._task is not None
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait(
                {waiter, self._task}, timeout=limit, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
        if self._task.done() and not event.is_set():
            exc = self._task.exception()
            raise LifespanError(f"lifespan {phase} crashed: {exc!r}") from exc
        if not event.is_set():
            raise LifespanError(f"lifespan {phase} did not finish within {limit} s")
        if self._failure is not None:
            raise LifespanError(f"lifespan {phase} failed: {self._failure}")

    async def __aenter__(self) -> LifespanManager:
        self._task = asyncio.create_task(self._run())
        await self._inbox.put({"type": "lifespan.startup"})
        try:
            await self._wait(self._started, self._startup_timeout, "startup")
        except BaseException:
            await self._stop_task()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        try:
            await self._wait(self._stopped, self._shutdown_timeout, "shutdown")
        finally:
            await self._stop_task()

    async def _stop_task(self) -> None:
        if self._task is None:
            return
        if not self._task.done():
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
