"""The bus port: what services code against, whichever adapter `open_bus` picked."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from avc_common.events import Event

Handler = Callable[[Event], Awaitable[None]]

# Growing backoff (base * 2**n) stops growing here, so a long run of failures still retries soon.
MAX_RETRY_DELAY_SECONDS: Final = 300.0
# Long enough for a handler to commit its side effects; `close()`/`cancel()` wait this by default.
DEFAULT_CLOSE_TIMEOUT_SECONDS: Final = 30.0
# Header values are bounded so a huge traceback cannot blow the AMQP frame size.
MAX_ERROR_CHARS: Final = 2000


class BusError(Exception):
    """The bus is unusable (not started, closed, unreachable)."""


class PublishFailed(BusError):
    """The broker did not confirm the message; it may or may not have been stored. Safe to retry:
    consumers deduplicate on `Event.id`."""


@dataclass(frozen=True)
class DeadLetter:
    """A message parked in a dead-letter queue. `event` is None when the body was not an Event."""

    queue: str
    body: bytes
    error: str
    attempts: int
    routing_key: str
    event: Event | None = field(default=None)


class Subscription(ABC):
    @abstractmethod
    async def cancel(self) -> None:
        """Stops delivery, lets in-flight handlers finish (bounded), keeps the queue and its
        messages for later subscribers."""

    @abstractmethod
    async def consuming(self) -> bool:
        """Returns whether a live consumer takes this subscription's deliveries now (for
        `/readyz`: connected to the broker is not enough while the consumer is being restored
        after a broker restart)."""


class Bus(ABC):
    """Topic publish/subscribe with durable per-consumer queues, retries and dead letters.

    Delivery is at least once: a handler may see the same event twice (redelivery after a crash
    or a lost ack), so handlers must be idempotent on `event.id`.
    """

    @abstractmethod
    async def start(self) -> None:
        """Connects and declares the topic exchange and its dead-letter exchange."""

    @abstractmethod
    async def close(self) -> None:
        """Stops consumers, waits (bounded) for in-flight handlers, then disconnects."""

    @abstractmethod
    async def ping(self) -> None:
        """Returns when connected; raises BusError otherwise (for `/readyz`)."""

    @abstractmethod
    async def publish(self, event: Event) -> None:
        """Returns once the broker has taken responsibility for `event` (routing key = type);
        raises PublishFailed otherwise."""

    @abstractmethod
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
        """Returns a running consumer of the queue `<prefix>.<queue>` bound to `routing_keys`
        (topic patterns). Subscriptions on one queue compete; distinct queues each get a copy."""

    @abstractmethod
    async def dead_letter_records(self, queue: str) -> list[DeadLetter]:
        """Returns the messages parked in `<prefix>.<queue>.dead`, without removing them."""

    async def dead_letters(self, queue: str) -> list[Event]:
        """Returns the parseable events parked in the dead-letter queue of `queue`."""
        return [r.event for r in await self.dead_letter_records(queue) if r.event is not None]


def retry_delay(base_seconds: float, failed_attempts: int) -> float:
    """Returns the wait before the next attempt: base, 2x base, 4x base… capped."""
    return min(base_seconds * 2.0 ** max(failed_attempts - 1, 0), MAX_RETRY_DELAY_SECONDS)


def error_text(exc: BaseException) -> str:
    """Returns `Type: message`, truncated to fit a message header."""
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def check_subscribe_args(
    routing_keys: Sequence[str], prefetch: int, max_attempts: int, retry_delay_seconds: float
) -> None:
    """Raises ValueError on arguments no adapter can honour."""
    if isinstance(routing_keys, str) or not routing_keys:
        raise ValueError("routing_keys must be a non-empty sequence of topic patterns")
    if prefetch < 1:
        raise ValueError("prefetch must be at least 1")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if retry_delay_seconds < 0:
        raise ValueError("retry_delay_seconds must not be negative")
