"""In-process bus adapter: the same semantics as RabbitMQ inside one event loop (all-in-one mode
and fast tests). Nothing survives the process; the queues live as long as the bus object."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from avc_common.bus.base import (
    DEFAULT_CLOSE_TIMEOUT_SECONDS,
    Bus,
    BusError,
    DeadLetter,
    Handler,
    PublishFailed,
    Subscription,
    check_subscribe_args,
    error_text,
    retry_delay,
)
from avc_common.events import Event
from avc_common.logging import get_logger

log = get_logger(__name__)


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Returns whether an AMQP topic pattern matches: `*` is one word, `#` zero or more."""
    return _match(pattern.split("."), routing_key.split("."))


def _match(pattern: list[str], words: list[str]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head in ("*", words[0])) and _match(rest, words[1:])


@dataclass(frozen=True)
class _Message:
    body: bytes
    routing_key: str
    failed_attempts: int = 0


@dataclass
class _Queue:
    name: str
    bindings: set[str] = field(default_factory=set)
    items: asyncio.Queue[_Message] = field(default_factory=asyncio.Queue)
    dead: list[DeadLetter] = field(default_factory=list)


class InMemoryBus(Bus):
    """One process, one event loop. Share one instance between every component of a process."""

    def __init__(
        self,
        *,
        exchange: str = "avcaption.events",
        queue_prefix: str = "avcaption",
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT_SECONDS,
    ) -> None:
        self.exchange = exchange
        self.queue_prefix = queue_prefix
        self.close_timeout = close_timeout
        self._queues: dict[str, _Queue] = {}
        self._subscriptions: set[_MemorySubscription] = set()
        self._retry_timers: set[asyncio.TimerHandle] = set()
        self._started = False
        self._closed = False

    async def start(self) -> None:
        if self._closed:
            raise BusError("bus is closed")
        self._started = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.gather(*(s.cancel() for s in list(self._subscriptions)))
        for timer in self._retry_timers:
            timer.cancel()
        self._retry_timers.clear()

    async def ping(self) -> None:
        self._check_open(BusError)

    async def publish(self, event: Event) -> None:
        self._check_open(PublishFailed)
        self._publish_raw(event.type, event.to_json())

    def _publish_raw(self, routing_key: str, body: bytes) -> None:
        # Bytes, not the Event object, go through the queue: handlers get a fresh parse, exactly
        # as over the network, and tests can inject bodies that are not Events.
        for queue in self._queues.values():
            if any(topic_matches(p, routing_key) for p in queue.bindings):
                queue.items.put_nowait(_Message(body, routing_key))

    async def subscribe(
        self,
        queue: str,
        routing_keys: Sequence[str],
        handler: Handler,
        *,
        prefetch: int = 16,
        max_attempts: int = 5,
        retry_delay_seconds: float = 1.0,
    ) -> Subscription:
        check_subscribe_args(routing_keys, prefetch, max_attempts, retry_delay_seconds)
        self._check_open(BusError)
        q = self._declare(queue)
        q.bindings.update(routing_keys)
        sub = _MemorySubscription(
            self,
            q,
            handler,
            prefetch=prefetch,
            max_attempts=max_attempts,
            retry_delay_seconds=retry_delay_seconds,
        )
        self._subscriptions.add(sub)
        sub.start()
        return sub

    async def dead_letter_records(self, queue: str) -> list[DeadLetter]:
        return list(self._declare(queue).dead)

    def _declare(self, queue: str) -> _Queue:
        name = f"{self.queue_prefix}.{queue}"
        return self._queues.setdefault(name, _Queue(name))

    def _check_open(self, error: type[BusError]) -> None:
        if self._closed:
            raise error("bus is closed")
        if not self._started:
            raise error("bus is not started")

    def _schedule_retry(self, queue: _Queue, message: _Message, delay: float) -> None:
        def put_back() -> None:
            self._retry_timers.discard(timer)
            queue.items.put_nowait(message)

        timer = asyncio.get_running_loop().call_later(delay, put_back)
        self._retry_timers.add(timer)


class _MemorySubscription(Subscription):
    def __init__(
        self,
        bus: InMemoryBus,
        queue: _Queue,
        handler: Handler,
        *,
        prefetch: int,
        max_attempts: int,
        retry_delay_seconds: float,
    ) -> None:
        self._bus = bus
        self._queue = queue
        self._handler = handler
        self._slots = asyncio.Semaphore(prefetch)
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay_seconds
        self._in_flight: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch(), name=f"bus:{self._queue.name}")

    async def consuming(self) -> bool:
        # In-process: consuming for as long as the dispatcher runs (until cancel or close).
        return self._dispatcher is not None and not self._dispatcher.done()

    async def _dispatch(self) -> None:
        # A slot is taken before a message is, so at most `prefetch` messages leave the queue for
        # this subscription and the others on the queue get the rest (competing consumers).
        while True:
            await self._slots.acquire()
            try:
                message = await self._queue.items.get()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.create_task(self._process(message))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _process(self, message: _Message) -> None:
        try:
            try:
                event = Event.from_json(message.body)
            except (ValidationError, ValueError) as exc:
                log.error("bus_event_invalid_dead_lettered", queue=self._queue.name, error=str(exc))
                self._dead_letter(message, f"invalid event body: {error_text(exc)}", None)
                return
            attempt = message.failed_attempts + 1
            try:
                await self._handler(event)
            except asyncio.CancelledError:
                # Unfinished = unacked: back to the queue, as the broker would do.
                self._queue.items.put_nowait(message)
                raise
            except Exception as exc:
                self._on_failure(message, event, attempt, exc)
        finally:
            self._slots.release()

    def _on_failure(self, message: _Message, event: Event, attempt: int, exc: Exception) -> None:
        if attempt >= self._max_attempts:
            log.error(
                "bus_event_dead_lettered",
                event_id=event.id,
                attempts=attempt,
                queue=self._queue.name,
                exc_info=exc,
            )
            self._dead_letter(replace(message, failed_attempts=attempt), error_text(exc), event)
            return
        delay = retry_delay(self._retry_delay, attempt)
        log.warning(
            "bus_event_retry",
            event_id=event.id,
            queue=self._queue.name,
            attempt=attempt,
            max_attempts=self._max_attempts,
            retry_in_seconds=round(delay, 1),
            error=repr(exc),
        )
        self._bus._schedule_retry(self._queue, replace(message, failed_attempts=attempt), delay)

    def _dead_letter(self, message: _Message, error: str, event: Event | None) -> None:
        self._queue.dead.append(
            DeadLetter(
                queue=self._queue.name,
                body=message.body,
                error=error,
                attempts=message.failed_attempts,
                routing_key=message.routing_key,
                event=event,
            )
        )

    async def cancel(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        # A handler cancelling its own subscription must not wait for itself.
        others = self._in_flight - {asyncio.current_task()}
        if others:
            _, pending = await asyncio.wait(others, timeout=self._bus.close_timeout)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        self._bus._subscriptions.discard(self)
