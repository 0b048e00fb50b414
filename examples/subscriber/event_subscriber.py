"""An example subscriber of AVCaption's events (docs/events.md), in one file.

It does what every internal subscriber should:

- binds a durable queue of its own (never one of the platform's) to the events exchange,
- checks each message against the schema of its type in the AsyncAPI document
  (docs/asyncapi.yaml), refusing what does not match and ignoring types it does not know,
- deduplicates on the envelope's `id` (delivery is at least once), remembering handled ids in a
  SQLite file so a restart of the subscriber does not forget them,
- acks only after its work is done, so a crash means a redelivery, never a lost event.

It depends on aio-pika, jsonschema and PyYAML only, not on the platform's code.

    python examples/subscriber/event_subscriber.py --url amqp://guest:guest@localhost:5672/ \\
        --queue my-service.avcaption-events --bind 'video.*'
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import sqlite3
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import aio_pika
import jsonschema
import yaml
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ConsumerTag,
)
from referencing import Registry
from referencing.jsonschema import DRAFT7

log = logging.getLogger("event_subscriber")

DEFAULT_CONTRACT: Final = Path(__file__).resolve().parents[2] / "docs" / "asyncapi.yaml"
DEFAULT_EXCHANGE: Final = "avcaption.events"
_DOC_URI: Final = "urn:avcaption:asyncapi"
# A message whose handler keeps failing is dropped by the broker after this many deliveries
# (quorum queues count them); point the queue at a dead-letter exchange to keep such messages.
DELIVERY_LIMIT: Final = 10
CLOSE_TIMEOUT: Final = 5.0


@dataclass(frozen=True)
class ReceivedEvent:
    """One event as the bus carries it (the envelope of docs/events.md)."""

    id: str
    type: str
    occurred_at: str
    account_id: str
    request_id: str | None
    data: dict[str, Any]


class InvalidEvent(Exception):
    """The body is not an event of its type as the contract describes it."""


class UnknownEventType(Exception):
    """A valid envelope of a type this contract does not know (a newer release added it)."""


class EnvelopeChecker:
    """Checks message bodies against the AsyncAPI document's message schemas."""

    def __init__(self, document: dict[str, Any]) -> None:
        registry: Registry[Any] = Registry().with_resource(
            _DOC_URI, DRAFT7.create_resource(document)
        )

        def validator(ref: str) -> jsonschema.Draft7Validator:
            return jsonschema.Draft7Validator({"$ref": f"{_DOC_URI}{ref}"}, registry=registry)

        self.version = str(document["info"]["version"])
        self._by_type = {
            message["name"]: validator(message["payload"]["$ref"])
            for message in document["components"]["messages"].values()
        }
        self._generic = validator("#/components/schemas/Event")

    @classmethod
    def from_file(cls, path: Path = DEFAULT_CONTRACT) -> EnvelopeChecker:
        document: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(document)

    @property
    def known_types(self) -> frozenset[str]:
        return frozenset(self._by_type)

    def check(self, body: bytes) -> ReceivedEvent:
        """Returns the event; raises InvalidEvent, or UnknownEventType for a type not in it."""
        try:
            value = json.loads(body)
        except ValueError as exc:
            raise InvalidEvent(f"not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise InvalidEvent("not a JSON object")
        validator = self._by_type.get(str(value.get("type")), self._generic)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value))
        if error is not None:
            raise InvalidEvent(f"{error.json_path}: {error.message}")
        if validator is self._generic:
            raise UnknownEventType(value["type"])
        return ReceivedEvent(**{f.name: value[f.name] for f in dataclasses.fields(ReceivedEvent)})


class SeenIds:
    """Ids of the events already handled, in a SQLite file (kept across restarts).

    Deduplication holds for one subscriber process. With several replicas on one queue, record
    the id in the same transaction as the work's own effect, under a unique key, instead.
    """

    def __init__(self, path: Path | str) -> None:
        self._db = sqlite3.connect(path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, type TEXT NOT NULL,"
            " handled_at TEXT NOT NULL)"
        )
        self._db.commit()

    def __contains__(self, event_id: object) -> bool:
        row = self._db.execute("SELECT 1 FROM seen WHERE id = ?", (event_id,)).fetchone()
        return row is not None

    def add(self, event: ReceivedEvent) -> None:
        with self._db:
            self._db.execute(
                "INSERT OR IGNORE INTO seen (id, type, handled_at) VALUES (?, ?, ?)",
                (event.id, event.type, datetime.now(UTC).isoformat()),
            )

    def close(self) -> None:
        self._db.close()


@dataclass
class Tally:
    """What the subscriber did with the messages it got."""

    handled: Counter[str] = field(default_factory=Counter)
    duplicates_dropped: int = 0
    invalid_rejected: int = 0
    unknown_ignored: int = 0
    handler_failures: int = 0


Handler = Callable[[ReceivedEvent], Awaitable[None]]


class Subscriber:
    """Consumes the events matching `bindings` from a durable queue of its own."""

    def __init__(
        self,
        *,
        url: str,
        queue: str,
        bindings: Sequence[str],
        handler: Handler,
        checker: EnvelopeChecker,
        seen: SeenIds,
        exchange: str = DEFAULT_EXCHANGE,
        prefetch: int = 8,
    ) -> None:
        self.url = url
        self.exchange = exchange
        self.queue_name = queue
        self.bindings = tuple(bindings)
        self.tally = Tally()
        self._handler = handler
        self._checker = checker
        self._seen = seen
        self._prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._queue: AbstractQueue | None = None
        self._tag: ConsumerTag | None = None
        # Two copies of one event in flight at once must not both do the work.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def start(self) -> None:
        """Connects (reconnecting by itself after a broker restart), declares the exchange as
        the platform does, its own queue and bindings, and starts consuming."""
        self._connection = await aio_pika.connect_robust(
            self.url, client_properties={"connection_name": f"subscriber {self.queue_name}"}
        )
        channel = await self._connection.channel()
        await channel.set_qos(prefetch_count=self._prefetch)
        # Same type and flags as the platform declares it: declaring is then a no-op.
        exchange = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        # A quorum queue survives broker restarts (and node losses) and counts deliveries.
        queue = await channel.declare_queue(
            self.queue_name,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-delivery-limit": DELIVERY_LIMIT},
        )
        for pattern in self.bindings:
            await queue.bind(exchange, routing_key=pattern)
        self._queue = queue
        self._tag = await queue.consume(self._on_message)

    async def close(self) -> None:
        """Stops consuming and disconnects; unacked messages go back to the queue."""
        queue, tag, connection = self._queue, self._tag, self._connection
        self._queue = self._tag = self._connection = None
        if queue is not None and tag is not None:
            # Bounded: a robust channel that lost its connection would wait for it to return.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(queue.cancel(tag), CLOSE_TIMEOUT)
        if connection is not None:
            await connection.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        try:
            event = self._checker.check(message.body)
        except UnknownEventType as exc:
            self.tally.unknown_ignored += 1
            log.info("ignoring event type %s (not in contract %s)", exc, self._checker.version)
            await message.ack()
            return
        except InvalidEvent as exc:
            self.tally.invalid_rejected += 1
            log.error("rejecting an invalid event (%s): %s", message.routing_key, exc)
            await message.reject(requeue=False)
            return
        lock = self._locks.setdefault(event.id, asyncio.Lock())
        async with lock:
            if event.id in self._seen:
                self.tally.duplicates_dropped += 1
                log.info("dropping duplicate %s %s", event.type, event.id)
                await message.ack()
                return
            try:
                await self._handler(event)
            except Exception:
                self.tally.handler_failures += 1
                log.exception(
                    "handler failed on %s %s; it will be redelivered", event.type, event.id
                )
                await message.nack(requeue=True)
                return
            # Recorded before the ack: a lost ack brings a redelivery that is then dropped.
            self._seen.add(event)
            self.tally.handled[event.type] += 1
        await message.ack()


async def print_event(event: ReceivedEvent) -> None:
    """The example's "work": one JSON line per event."""
    print(json.dumps({"id": event.id, "type": event.type, "data": event.data}), flush=True)


async def run(args: argparse.Namespace) -> Tally:
    seen = SeenIds(args.seen)
    subscriber = Subscriber(
        url=args.url,
        exchange=args.exchange,
        queue=args.queue,
        bindings=args.bind or ["#"],
        handler=print_event,
        checker=EnvelopeChecker.from_file(args.contract),
        seen=seen,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await subscriber.start()
    try:
        await stop.wait()
    finally:
        await subscriber.close()
        seen.close()
    return subscriber.tally


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", default="amqp://guest:guest@localhost:5672/")
    parser.add_argument("--exchange", default=DEFAULT_EXCHANGE, help="AVC_BUS_EXCHANGE")
    parser.add_argument("--queue", required=True, help="your own queue, e.g. my-service.events")
    parser.add_argument("--bind", action="append", help="routing key pattern (repeatable; #)")
    parser.add_argument("--contract", type=Path, default=DEFAULT_CONTRACT)
    parser.add_argument("--seen", type=Path, default=Path("seen-events.sqlite3"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    tally = asyncio.run(run(args))
    log.info("stopped: %s", tally)


if __name__ == "__main__":
    main()
