"""RabbitMQ bus adapter (aio-pika).

Topology, for exchange `X` and a subscribed queue `Q` (= f"{queue_prefix}.{queue}"):

    X        durable topic exchange; events are published with routing key = event type
    X.dlx    durable direct exchange; `Q.dead` is bound to it with routing key `Q`
    Q        quorum queue bound to X; rejected/over-delivered messages go to X.dlx (key Q)
    Q.retry  quorum queue, no consumer; per-message TTL, then dead-lettered back into Q
    Q.dead   quorum queue holding what gave up, with the last error in a header

Retries: a failed message is republished (confirmed) to `Q.retry` with the attempt count in
`x-avc-attempts` and a per-message TTL, then acked. When the TTL runs out the broker moves it
back into `Q`. This needs no plugin and counts only handler failures; the quorum
`x-delivery-count` also counts redeliveries after a connection loss. Per-message TTL expires at
the head of the queue only, so with growing backoff a short delay can wait behind a longer one:
the delay is a minimum, never a promise.

What the design works around (aio-pika / aiormq issues, read before changing this file):
- A robust publish waits for the connection with no bound (mosquito/aio-pika#556, #636), and a
  confirm can be lost so `publish()` hangs (#689). Every publish runs under a deadline and raises
  PublishFailed when it passes. aio-pika's own `Exchange.publish` docstring says robust
  connections "do not automatically replay failed publications… retrying can produce
  duplicates": we retry inside the deadline while the channel is being reopened
  (taskiq-python/taskiq-aio-pika#59 shows the reopen race) and accept duplicates.
- aiormq maps mandatory returns to publishes by `message_id` (#689): every publish gets a fresh
  `message_id` (`<event id>.<random>`), never a reused one.
- Consumers not coming back after a broker restart (#231, #626) or a broker-side cancel (#334): a
  watchdog checks every subscription's consumer tag on its live channel and, when missing twice in
  a row while connected, reopens the subscription on a new channel.
- Robust objects are only held weakly by the connection (#536): the bus keeps strong references
  to every channel, exchange and queue it declared.
- An ack after a reconnect targets a dead channel (#501; delivery tags are per channel) and may
  hang: acks are bounded and their failure only logged; the broker redelivers (at least once).
- aiormq runs consumer callbacks as tasks of the channel and cancels them when the channel
  closes; a broker blip would then kill a 20-minute encode. Handlers run in tasks owned here.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    ConsumerTag,
)
from aio_pika.exceptions import DeliveryError, PublishError
from prometheus_client import Gauge
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

ATTEMPTS_HEADER: Final = "x-avc-attempts"
ERROR_HEADER: Final = "x-avc-error"
ROUTING_KEY_HEADER: Final = "x-avc-routing-key"
# Broker bookkeeping that must not be copied onto a republished message.
_BROKER_HEADERS: Final = ("x-death", "x-delivery-count")
_BROKER_HEADER_PREFIXES: Final = ("x-first-death-", "x-last-death-")
# Acks and cancels are tiny; one that takes longer is stuck on a dying channel (#501).
_SETTLE_TIMEOUT: Final = 10.0
# Bus options that may ride on AVC_BUS_URL (`amqp://…/?publish_timeout=10`); aio-pika never sees
# them. Its own ones (`heartbeat`, `reconnect_interval`, …) pass through.
URL_OPTIONS: Final = ("publish_timeout", "close_timeout")
DEFAULT_PUBLISH_TIMEOUT_SECONDS: Final = 30.0
# A dead-letter queue is read into memory to be peeked at; this bounds it.
_PEEK_LIMIT: Final = 10_000

# Queue depth as each consuming process sees it at its watchdog tick (process-wide registry, so
# every /metrics of the process shows it): the encode backlog, retries waiting, dead letters.
QUEUE_MESSAGES: Final = Gauge(
    "avc_bus_queue_messages",
    "Messages ready in a subscribed queue and its .retry/.dead siblings (watchdog sample).",
    ["queue"],
)
QUEUE_CONSUMERS: Final = Gauge(
    "avc_bus_queue_consumers", "Consumers of a subscribed queue (watchdog sample).", ["queue"]
)


def _quorum_args(**extra: Any) -> dict[str, Any]:
    # at-least-once dead-lettering keeps a message in the source queue until the target confirms
    # it (RabbitMQ >= 3.10) and requires `reject-publish` overflow; the target must stay routable,
    # which is why `.dead` is declared with every subscription. Arguments are fixed constants: a
    # re-declare with different ones fails with PRECONDITION_FAILED.
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",
        **extra,
    }


def _split_url_options(url: str) -> tuple[str, dict[str, float]]:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    try:
        options = {k: float(v) for k, v in query if k in URL_OPTIONS}
    except ValueError as exc:
        raise ValueError(f"bus URL options {URL_OPTIONS} must be numbers (seconds)") from exc
    rest = urlencode([(k, v) for k, v in query if k not in URL_OPTIONS])
    return urlunsplit(parts._replace(query=rest)), options


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RabbitBus(Bus):
    """RabbitMQ through one robust connection: one confirm channel for publishing, one channel
    per subscription (its own prefetch).

    Long handlers: RabbitMQ closes a channel whose delivery stays unacked longer than
    `consumer_timeout` (default 30 min; RabbitMQ 3.10 has only the global setting in
    rabbitmq.conf), and the message is then redelivered while the first handler still runs.
    Deployments that encode longer than that must raise `consumer_timeout`. Heartbeats are sent by
    the event loop, so handlers must never block it (ffmpeg runs as a subprocess, blocking I/O in a
    thread); a blocked loop misses heartbeats and the broker drops the connection.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "avcaption.events",
        queue_prefix: str = "avcaption",
        publish_timeout: float | None = None,
        close_timeout: float | None = None,
        connect_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        watchdog_interval: float = 5.0,
        delivery_limit: int = 20,
    ) -> None:
        self.url, from_url = _split_url_options(url)
        self.exchange = exchange
        self.dead_letter_exchange = f"{exchange}.dlx"
        self.queue_prefix = queue_prefix
        # How long a publish may wait for a reconnect before PublishFailed (argument > URL).
        self.publish_timeout = (
            publish_timeout
            if publish_timeout is not None
            else from_url.get("publish_timeout", DEFAULT_PUBLISH_TIMEOUT_SECONDS)
        )
        self.close_timeout = (
            close_timeout
            if close_timeout is not None
            else from_url.get("close_timeout", DEFAULT_CLOSE_TIMEOUT_SECONDS)
        )
        self.connect_timeout = connect_timeout
        self.reconnect_interval = reconnect_interval
        self.watchdog_interval = watchdog_interval
        # Poison-message guard for crashes the attempt header cannot see (a worker killed
        # mid-handler, over and over): the broker dead-letters after this many deliveries.
        self.delivery_limit = delivery_limit
        self._conn: AbstractRobustConnection | None = None
        self._pub: AbstractRobustChannel | None = None
        self._exchanges: dict[str, AbstractExchange] = {}
        self._subscriptions: set[_RabbitSubscription] = set()
        self._declared_queues: set[str] = set()
        self._watchdog: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def declared_queues(self) -> frozenset[str]:
        """Names of the queues this bus declared (for tests and ops tooling)."""
        return frozenset(self._declared_queues)

    async def start(self) -> None:
        if self._closed:
            raise BusError("bus is closed")
        if self._conn is not None:
            return
        kwargs: dict[str, Any] = {}
        if "reconnect_interval" not in dict(parse_qsl(urlsplit(self.url).query)):
            kwargs["reconnect_interval"] = self.reconnect_interval
        try:
            conn = await aio_pika.connect_robust(
                self.url,
                timeout=self.connect_timeout,
                client_properties={"connection_name": f"avcaption:{self.queue_prefix}"},
                **kwargs,
            )
        except (TimeoutError, OSError, aiormq.exceptions.AMQPError) as exc:
            raise BusError(f"cannot connect to RabbitMQ at {_redact(self.url)}: {exc}") from exc
        conn.close_callbacks.add(self._on_connection_lost)
        conn.reconnect_callbacks.add(self._on_reconnected)
        try:
            # on_return_raises: a mandatory publish (retry/dead-letter copies) that no queue takes
            # must fail loudly instead of resolving as if delivered.
            pub = await conn.channel(publisher_confirms=True, on_return_raises=True)
            self._exchanges = await self._declare_exchanges(pub)
        except Exception:
            await conn.close()
            raise
        self._conn, self._pub = conn, pub
        self._watchdog = asyncio.create_task(self._watch(), name="bus:watchdog")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Every step is bounded: a watchdog busy reopening a subscription, or a connection
        # stuck mid-reconnect, must not hang shutdown (seen in process tests).
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._watchdog), self.close_timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(s.stop() for s in list(self._subscriptions))),
                self.close_timeout + 5,
            )
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._conn.close(), self.close_timeout)

    async def ping(self) -> None:
        if self._closed:
            raise BusError("bus is closed")
        conn, pub = self._conn, self._pub
        if conn is None or pub is None:
            raise BusError("bus is not started")
        if conn.is_closed or not conn.connected.is_set() or pub.is_closed:
            raise BusError(f"not connected to RabbitMQ at {_redact(self.url)}")

    async def publish(self, event: Event) -> None:
        if self._closed:
            raise PublishFailed("bus is closed")
        # Unroutable events are fine (nobody subscribes to that type yet): mandatory=False. The
        # confirm, not the routing, is what says the broker took it.
        await self._publish(
            self.exchange,
            event.type,
            lambda: aio_pika.Message(
                event.to_json(),
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                message_id=f"{event.id}.{secrets.token_hex(4)}",
                type=event.type,
            ),
            mandatory=False,
        )

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
        self._connection()
        sub = _RabbitSubscription(
            self,
            f"{self.queue_prefix}.{queue}",
            tuple(routing_keys),
            handler,
            prefetch=prefetch,
            max_attempts=max_attempts,
            retry_delay_seconds=retry_delay_seconds,
        )
        await sub.open()
        self._subscriptions.add(sub)
        return sub

    async def dead_letter_records(self, queue: str) -> list[DeadLetter]:
        name = f"{self.queue_prefix}.{queue}"
        # A throwaway channel: every message got here stays unacked and goes back to the queue
        # when the channel closes, so peeking removes nothing.
        channel = await self._connection().channel(publisher_confirms=False)
        try:
            dead = await self._declare_dead_queue(channel, name)
            records: list[DeadLetter] = []
            while len(records) < _PEEK_LIMIT:
                message = await dead.get(no_ack=False, fail=False, timeout=10)
                if message is None:
                    break
                records.append(_dead_letter_record(name, message))
            return records
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    # internals

    def _connection(self) -> AbstractRobustConnection:
        if self._closed:
            raise BusError("bus is closed")
        if self._conn is None:
            raise BusError("bus is not started")
        return self._conn

    async def _declare_exchanges(
        self, channel: AbstractRobustChannel
    ) -> dict[str, AbstractExchange]:
        events = await channel.declare_exchange(
            self.exchange, aio_pika.ExchangeType.TOPIC, durable=True
        )
        dlx = await channel.declare_exchange(
            self.dead_letter_exchange, aio_pika.ExchangeType.DIRECT, durable=True
        )
        return {self.exchange: events, self.dead_letter_exchange: dlx, "": channel.default_exchange}

    async def _declare_dead_queue(self, channel: AbstractRobustChannel, name: str) -> AbstractQueue:
        dead = await channel.declare_queue(
            f"{name}.dead", durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(self.dead_letter_exchange, routing_key=name)
        self._declared_queues.add(f"{name}.dead")
        return dead

    async def _declare_consumer_queues(
        self, channel: AbstractRobustChannel, name: str
    ) -> AbstractQueue:
        # Exchanges are declared on this channel as well: a robust channel restores its own
        # exchanges before its queues, so bindings never wait on another channel's restore.
        await self._declare_exchanges(channel)
        await self._declare_dead_queue(channel, name)
        await channel.declare_queue(
            f"{name}.retry",
            durable=True,
            arguments=_quorum_args(
                **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": name}
            ),
        )
        main = await channel.declare_queue(
            name,
            durable=True,
            arguments=_quorum_args(
                **{
                    "x-dead-letter-exchange": self.dead_letter_exchange,
                    "x-dead-letter-routing-key": name,
                    "x-delivery-limit": self.delivery_limit,
                }
            ),
        )
        self._declared_queues.update({name, f"{name}.retry"})
        return main

    async def _publish(
        self,
        exchange: str,
        routing_key: str,
        build: Callable[[], aio_pika.Message],
        *,
        mandatory: bool,
    ) -> None:
        """Returns once the broker confirmed; retries across a reconnect until the deadline.

        Also serves handlers still finishing during `close()` (their retry and dead-letter
        copies), so only a closed connection stops it, not a closing bus.
        """
        conn = self._conn
        if conn is None:
            raise PublishFailed("bus is not started")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        pause = 0.05
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    await self._exchanges[exchange].publish(
                        build(), routing_key, mandatory=mandatory
                    )
                return
            except PublishError as exc:
                raise PublishFailed(f"unroutable: {exchange!r} {routing_key!r}") from exc
            except DeliveryError as exc:
                raise PublishFailed(f"broker refused {routing_key!r}: {exc}") from exc
            except TimeoutError as exc:
                raise PublishFailed(
                    f"{routing_key!r} not confirmed within {self.publish_timeout:g}s"
                ) from exc
            except (aiormq.exceptions.AMQPError, ConnectionError, RuntimeError) as exc:
                # Channel closed or being reopened (ChannelInvalidStateError is a RuntimeError).
                if conn.close_called or conn.is_closed:
                    raise PublishFailed("connection closed") from exc
                if loop.time() + pause >= deadline:
                    raise PublishFailed(f"{routing_key!r} not confirmed: {exc!r}") from exc
                log.debug("bus_publish_retry", routing_key=routing_key, error=repr(exc))
                await asyncio.sleep(pause)
                pause = min(pause * 2, 1.0)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watchdog_interval)
            conn = self._conn
            if conn is None or not conn.connected.is_set():
                continue
            for sub in list(self._subscriptions):
                try:
                    await sub.check()
                except Exception as exc:
                    log.error("bus_watchdog_check_failed", queue=sub.name, exc_info=exc)

    def _on_connection_lost(self, *_: Any) -> None:
        if not self._closed:
            log.warning("bus_connection_lost", url=_redact(self.url))

    def _on_reconnected(self, *_: Any) -> None:
        log.info("bus_reconnected", url=_redact(self.url))


class _RabbitSubscription(Subscription):
    def __init__(
        self,
        bus: RabbitBus,
        name: str,
        routing_keys: tuple[str, ...],
        handler: Handler,
        *,
        prefetch: int,
        max_attempts: int,
        retry_delay_seconds: float,
    ) -> None:
        self._bus = bus
        self.name = name
        self._routing_keys = routing_keys
        self._handler = handler
        self._prefetch = prefetch
        self._max_attempts = max_attempts
        self._retry_delay = retry_delay_seconds
        # Bounds concurrency even when handlers of a lost channel still run next to deliveries
        # of its replacement (the broker's prefetch counts per channel).
        self._slots = asyncio.Semaphore(prefetch)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractQueue | None = None
        self._tag: ConsumerTag | None = None
        self._misses = 0
        self._stopped = False

    async def open(self) -> None:
        """Declares everything on a fresh channel and starts consuming."""
        channel = await self._bus._connection().channel(publisher_confirms=False)
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await self._bus._declare_consumer_queues(channel, self.name)
            for key in self._routing_keys:
                await queue.bind(self._bus.exchange, routing_key=key)
            tag = await queue.consume(self._on_message)
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        self._channel, self._queue, self._tag = channel, queue, tag
        if self._stopped:  # cancelled while the watchdog was reopening it
            await self._close_channel()

    async def check(self) -> None:
        """Reopens the subscription when its consumer is gone while connected (#231, #626)."""
        if self._stopped:
            return
        if await self._consumer_alive():
            self._misses = 0
            await self._sample_depth()
            return
        self._misses += 1
        # Twice in a row: aio-pika's own restore gets a full interval before we step in.
        if self._misses < 2:
            return
        log.warning("bus_consumer_gone_reopening", queue=self.name)
        old = self._channel
        self._channel = self._queue = self._tag = None
        if old is not None:
            # Closing stops aio-pika restoring it next to our replacement.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(old.close(), _SETTLE_TIMEOUT)
        await self.open()
        self._misses = 0

    async def _sample_depth(self) -> None:
        """Sets the queue gauges from passive declares; best effort (a failure keeps the last
        sample: the queues exist while this subscription consumes, so none should fail)."""
        channel = self._channel
        if channel is None or channel.is_closed:
            return
        try:
            underlay = await asyncio.wait_for(channel.get_underlay_channel(), 2)
            for name in (self.name, f"{self.name}.retry", f"{self.name}.dead"):
                ok = await asyncio.wait_for(underlay.queue_declare(name, passive=True), 2)
                QUEUE_MESSAGES.labels(name).set(ok.message_count or 0)
                if name == self.name:
                    QUEUE_CONSUMERS.labels(name).set(ok.consumer_count or 0)
        except (TimeoutError, aiormq.exceptions.AMQPError, RuntimeError):
            log.debug("bus_depth_sample_failed", queue=self.name, exc_info=True)

    async def consuming(self) -> bool:
        """Connected, and this subscription's consumer tag is registered on its live channel:
        false from a connection loss until aio-pika's restore (or the watchdog's reopen) has
        consumed again."""
        conn = self._bus._conn
        if self._stopped or conn is None or conn.is_closed or not conn.connected.is_set():
            return False
        return await self._consumer_alive()

    async def _consumer_alive(self) -> bool:
        channel, tag = self._channel, self._tag
        if channel is None or tag is None or channel.is_closed:
            return False
        try:
            underlay = await asyncio.wait_for(channel.get_underlay_channel(), 2)
        except (TimeoutError, aiormq.exceptions.AMQPError, RuntimeError):
            return False
        return isinstance(underlay, aiormq.Channel) and tag in underlay.consumers

    async def cancel(self) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._bus._subscriptions.discard(self)
        queue, tag = self._queue, self._tag
        if queue is not None and tag is not None:
            try:
                # Also drops the tag from aio-pika's restore list, even if this times out.
                await asyncio.wait_for(queue.cancel(tag), _SETTLE_TIMEOUT)
            except Exception as exc:
                log.warning("bus_consumer_cancel_failed", queue=self.name, error=repr(exc))
        # A handler cancelling its own subscription must not wait for itself.
        others = self._in_flight - {asyncio.current_task()}
        if others:
            _, pending = await asyncio.wait(others, timeout=self._bus.close_timeout)
            for task in pending:
                task.cancel()  # unacked: the broker redelivers when the channel closes
            if pending:
                await asyncio.wait(pending, timeout=_SETTLE_TIMEOUT)
        await self._close_channel()

    async def _close_channel(self) -> None:
        if self._channel is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._channel.close(), _SETTLE_TIMEOUT)

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopped:
            return  # left unacked: requeued when the channel closes
        task = asyncio.create_task(self._process(message))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _process(self, message: AbstractIncomingMessage) -> None:
        async with self._slots:
            if self._stopped:
                # Prefetched but not started when the subscription stopped: give it back now.
                await _settle(lambda: message.nack(requeue=True), self.name)
                return
            headers = message.headers or {}
            failed = _as_int(headers.get(ATTEMPTS_HEADER))
            try:
                event = Event.from_json(message.body)
            except (ValidationError, ValueError) as exc:
                log.error("bus_event_invalid_dead_lettered", queue=self.name, error=str(exc))
                await self._dead_letter(message, f"invalid event body: {error_text(exc)}", failed)
                return
            attempt = failed + 1
            try:
                await self._handler(event)
            except Exception as exc:
                await self._on_failure(message, event, attempt, exc)
                return
            await _settle(message.ack, self.name)

    async def _on_failure(
        self, message: AbstractIncomingMessage, event: Event, attempt: int, exc: Exception
    ) -> None:
        if attempt >= self._max_attempts:
            log.error(
                "bus_event_dead_lettered",
                event_id=event.id,
                attempts=attempt,
                queue=self.name,
                exc_info=exc,
            )
            await self._dead_letter(message, error_text(exc), attempt)
            return
        delay = retry_delay(self._retry_delay, attempt)
        log.warning(
            "bus_event_retry",
            event_id=event.id,
            queue=self.name,
            attempt=attempt,
            max_attempts=self._max_attempts,
            retry_in_seconds=round(delay, 1),
            error=repr(exc),
        )
        try:
            await self._bus._publish(
                "",
                f"{self.name}.retry",
                lambda: _copy(message, {ATTEMPTS_HEADER: attempt}, expiration=delay),
                mandatory=True,
            )
        except PublishFailed as publish_exc:
            # Not parked for later: hand it straight back (the delivery limit still caps loops).
            log.warning("bus_retry_park_failed", event_id=event.id, error=str(publish_exc))
            await _settle(lambda: message.nack(requeue=True), self.name)
            return
        await _settle(message.ack, self.name)

    async def _dead_letter(
        self, message: AbstractIncomingMessage, error: str, attempts: int
    ) -> None:
        try:
            await self._bus._publish(
                self._bus.dead_letter_exchange,
                self.name,
                lambda: _copy(message, {ERROR_HEADER: error, ATTEMPTS_HEADER: attempts}),
                mandatory=True,
            )
        except PublishFailed as exc:
            # The queue's own dead-lettering still parks it in `.dead`, only without our header.
            log.warning("bus_dead_letter_copy_failed_rejecting", error=str(exc))
            await _settle(lambda: message.reject(requeue=False), self.name)
            return
        await _settle(message.ack, self.name)


async def _settle(action: Callable[[], Awaitable[Any]], queue: str) -> None:
    """Acks/nacks/rejects; a failure only means the broker will redeliver (at least once)."""
    try:
        await asyncio.wait_for(action(), _SETTLE_TIMEOUT)
    except Exception as exc:
        # The broker redelivers it.
        log.warning("bus_settle_failed", queue=queue, error=repr(exc))


def _copy(
    message: AbstractIncomingMessage, headers: dict[str, Any], *, expiration: float | None = None
) -> aio_pika.Message:
    kept = {
        k: v
        for k, v in (message.headers or {}).items()
        if k not in _BROKER_HEADERS and not k.startswith(_BROKER_HEADER_PREFIXES)
    }
    kept.setdefault(ROUTING_KEY_HEADER, message.routing_key or "")
    kept.update(headers)
    message_id = (message.message_id or "msg").rsplit(".", 1)[0]
    return aio_pika.Message(
        message.body,
        headers=kept,
        content_type=message.content_type,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=f"{message_id}.{secrets.token_hex(4)}",
        type=message.type,
        expiration=expiration,
    )


def _dead_letter_record(queue: str, message: AbstractIncomingMessage) -> DeadLetter:
    headers = message.headers or {}
    error = headers.get(ERROR_HEADER)
    if error is None:
        # Parked by the broker itself (delivery limit, or a reject when our copy failed).
        deaths = headers.get("x-death")
        first = deaths[0] if isinstance(deaths, list) and deaths else None
        reason = first.get("reason") if isinstance(first, dict) else None
        error = f"dead-lettered by the broker: {reason!s}"
    try:
        event: Event | None = Event.from_json(message.body)
    except (ValidationError, ValueError):
        event = None
    return DeadLetter(
        queue=queue,
        body=message.body,
        error=str(error),
        attempts=_as_int(headers.get(ATTEMPTS_HEADER)),
        routing_key=str(headers.get(ROUTING_KEY_HEADER) or message.routing_key or ""),
        event=event,
    )


def _as_int(value: object) -> int:
    try:
        return int(value) if isinstance(value, int | str) else 0
    except ValueError:
        return 0
