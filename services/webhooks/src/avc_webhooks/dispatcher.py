"""What `webhooks-worker` does with due deliveries: claims them, sends them (concurrently, up to
`AVC_WEBHOOKS_CONCURRENCY`), stores each outcome and schedules retries. The poll that looks for
due deliveries is one `avc_common.periodic` pass (`poll_pass`), wired in `worker.py`.

Claiming is one atomic find-and-update that leases the delivery to this worker (a new token per
claim) for `AVC_WEBHOOKS_LEASE_SECONDS`, longer than an attempt may take; the result is stored
only under that token, so two workers never send the same attempt concurrently. A worker that
dies mid-attempt leaves a lease that runs out, and the delivery is claimed again (the receiver
may then see the same `webhook-id` twice, which is what it is there for).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram

from avc_common.logging import get_logger
from avc_common.timeutil import utcnow
from avc_webhooks.config import WebhookSettings
from avc_webhooks.repository import (
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    WebhookRepository,
)
from avc_webhooks.sender import OUTCOMES, AttemptResult, Sender

log = get_logger(__name__)

ENDPOINT_DELETED: Final = "The webhook was deleted."
ENDPOINT_DISABLED: Final = "The webhook is disabled."
GONE_DISABLED: Final = "The webhook was disabled: the receiver answered 410 Gone."
FAILING_DISABLED: Final = "The webhook was disabled after failing every attempt for too long."


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "avc_webhook_attempts",
            "Webhook delivery attempts, by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "avc_webhook_attempt_duration_seconds",
            "How long webhook delivery attempts took, by outcome.",
            ["outcome"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
            registry=registry,
        )
        self.disabled = Counter(
            "avc_webhook_endpoints_disabled",
            "Webhook endpoints the worker disabled, by reason (gone, failing).",
            ["reason"],
            registry=registry,
        )
        for outcome in OUTCOMES:  # every series present from the start
            self.attempts.labels(outcome)


class DeliveryWorker:
    def __init__(
        self,
        *,
        repository: WebhookRepository,
        sender: Sender,
        settings: WebhookSettings,
        metrics: WorkerMetrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._repo = repository
        self._sender = sender
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(settings.concurrency)

    async def poll_pass(self, _pass_number: int = 0) -> int:
        """One pass of the poll (`avc_common.periodic` runs it every
        `AVC_WEBHOOKS_POLL_INTERVAL_SECONDS`): claims due deliveries and starts sending each
        one, at most `concurrency` at once (waiting for a free slot while more are due), until
        none is due; returns how many it started. The attempts run on beyond the pass."""
        started = 0
        while True:
            await self._slots.acquire()
            try:
                claimed = await self._claim()
            except BaseException:
                self._slots.release()
                raise
            if claimed is None:
                self._slots.release()
                return started
            task = asyncio.create_task(self._deliver_guarded(*claimed))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
            task.add_done_callback(lambda _: self._slots.release())
            started += 1

    async def drain(self) -> None:
        """Waits (bounded by one attempt's timeout) for the attempts under way; cancels what is
        left (a cancelled attempt gives its lease back). Called once the poll has stopped."""
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(
            set(self._in_flight), timeout=self._settings.timeout_seconds + 5
        )
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _claim(self) -> tuple[Delivery, str] | None:
        token = secrets.token_hex(12)
        delivery = await self._repo.claim_due(now=self._clock(), lease=self._lease, token=token)
        return None if delivery is None else (delivery, token)

    async def _deliver_guarded(self, delivery: Delivery, token: str) -> None:
        try:
            await self.deliver(delivery, token)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._repo.release(delivery.id, token=token)
            raise
        except Exception as exc:
            # The lease runs out and the delivery is claimed again.
            log.error("webhook_delivery_crashed", delivery_id=delivery.id, exc_info=exc)

    async def deliver(self, delivery: Delivery, token: str) -> None:
        """Makes one attempt of a claimed delivery and stores what came of it."""
        endpoint = await self._repo.get_endpoint(
            account_id=delivery.account_id, endpoint_id=delivery.endpoint_id
        )
        if endpoint is None or not endpoint.enabled:
            reason = ENDPOINT_DELETED if endpoint is None else ENDPOINT_DISABLED
            await self._repo.finish_attempt(
                delivery.id,
                token=token,
                outcome=AttemptOutcome(
                    DeliveryStatus.FAILED, updated_at=self._clock(), last_error=reason
                ),
                attempt=None,
            )
            return
        result = await self._sender.send(
            url=endpoint.url,
            secret=endpoint.secret,
            message_id=delivery.event_id,
            body=delivery.body,
        )
        if self._metrics is not None:
            self._metrics.attempts.labels(result.outcome).inc()
            self._metrics.duration.labels(result.outcome).observe(result.duration_ms / 1000)
        now = self._clock()
        outcome = await self._outcome(delivery, endpoint.id, result, now)
        entry = _attempt_entry(delivery.attempts + 1, result)
        stored = await self._repo.finish_attempt(
            delivery.id, token=token, outcome=outcome, attempt=entry
        )
        log.info(
            "webhook_attempt",
            delivery_id=delivery.id,
            webhook_id=endpoint.id,
            event_id=delivery.event_id,
            attempt=delivery.attempts + 1,
            outcome=result.outcome,
            status_code=result.status_code,
            next_status=outcome.status.value,
            stored=stored,
        )

    async def _outcome(
        self, delivery: Delivery, endpoint_id: str, result: AttemptResult, now: datetime
    ) -> AttemptOutcome:
        attempted = AttemptOutcome(
            DeliveryStatus.FAILED,
            updated_at=now,
            last_status_code=result.status_code,
            last_error=result.error,
        )
        if result.succeeded:
            await self._repo.endpoint_succeeded(endpoint_id)
            return replace(attempted, status=DeliveryStatus.SUCCEEDED, delivered_at=now)
        if result.outcome == "gone":
            await self._disable(endpoint_id, "gone", GONE_DISABLED, now)
            return attempted
        failures = delivery.auto_failures + 1
        attempted = replace(attempted, auto_failures=failures)
        endpoint = await self._repo.endpoint_failed(endpoint_id, now=now)
        if (
            endpoint is not None
            and endpoint.failing_since is not None
            and (now - endpoint.failing_since).total_seconds()
            >= self._settings.disable_after_seconds
        ):
            await self._disable(endpoint_id, "failing", FAILING_DISABLED, now)
            return attempted
        schedule = self._settings.retry_schedule
        if failures > len(schedule):
            return attempted
        delay = schedule[failures - 1] * (1 + random.uniform(0, self._settings.retry_jitter))
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        return replace(
            attempted,
            status=DeliveryStatus.PENDING,
            next_attempt_at=now + timedelta(seconds=delay),
        )

    async def _disable(self, endpoint_id: str, reason: str, message: str, now: datetime) -> None:
        if await self._repo.disable_endpoint(endpoint_id, reason=reason, now=now):
            given_up = await self._repo.fail_pending(
                endpoint_id=endpoint_id, reason=message, now=now
            )
            if self._metrics is not None:
                self._metrics.disabled.labels(reason).inc()
            log.warning(
                "webhook_disabled", webhook_id=endpoint_id, reason=reason, given_up=given_up
            )


def _attempt_entry(number: int, result: AttemptResult) -> Attempt:
    return Attempt(
        attempt=number,
        started_at=result.started_at,
        duration_ms=result.duration_ms,
        outcome=result.outcome,
        status_code=result.status_code,
        error=result.error,
        response_body=result.response_body,
        retry_after_seconds=result.retry_after,
    )
