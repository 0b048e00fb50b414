"""Deliveries to a real local HTTPS receiver: signatures, retries, restarts, 410, Retry-After,
redirects, manual retry, leases."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from tests.support.assertions import assert_error, eventually

from avc_common.events import (
    ErrorInfo,
    Event,
    EventData,
    RenditionInfo,
    SubtitleTranslated,
    VideoDeleted,
    VideoEncoded,
    VideoFailed,
    VideoUploaded,
    VideoViewed,
    ViewThreshold,
)
from avc_common.ids import new_id
from avc_common.timeutil import utcnow
from avc_webhooks.dispatcher import DeliveryWorker
from avc_webhooks.repository import AttemptOutcome, Delivery, DeliveryStatus, WebhookRepository
from avc_webhooks.sender import parse_retry_after

from .conftest import (
    Received,
    Receiver,
    Reply,
    WebhooksHarness,
    auth,
    receiver_settings,
    verify_standard_webhook,
)


def public_events(account_id: str) -> list[Event]:
    video = new_id("vid")
    payloads: list[EventData] = [
        VideoUploaded(video_id=video, filename="a.mp4", size_bytes=10, source_key="k", title="A"),
        VideoEncoded(
            video_id=video,
            duration_seconds=2.0,
            width=320,
            height=240,
            renditions=[RenditionInfo(name="240p", width=320, height=240, bitrate_kbps=300)],
            renditions_bytes=99,
        ),
        VideoFailed(video_id=video, error=ErrorInfo(code="bad_media", message="unreadable")),
        ViewThreshold(video_id=video, threshold=100, views=100),
        SubtitleTranslated(
            video_id=video,
            subtitle_id=new_id("sub"),
            source_subtitle_id=new_id("sub"),
            language="pt-BR",
        ),
    ]
    return [Event.of(p, account_id=account_id, request_id="req-1") for p in payloads]


def one_event(account_id: str) -> Event:
    return Event.of(
        VideoFailed(video_id=new_id("vid"), error=ErrorInfo(code="x", message="y")),
        account_id=account_id,
    )


async def test_each_public_event_arrives_signed_and_as_the_envelope(
    harness: WebhooksHarness, receiver: Receiver
) -> None:
    hook = await harness.create(receiver.url())
    events = public_events(harness.account_id)
    # Internal-only events never become webhooks.
    internal = [
        Event.of(
            VideoDeleted(video_id="vid_x", status="ready", bytes_freed=1),
            account_id=harness.account_id,
        ),
        Event.of(VideoViewed(video_id="vid_x"), account_id=harness.account_id),
    ]
    await harness.publish(*events, *internal)
    await harness.wait_for_deliveries(hook["id"], 5)
    async with harness.worker():
        delivered = await harness.wait_for_status(hook["id"], "succeeded")

    assert len(delivered) == 5
    assert len(receiver.requests) == 5
    by_id = {r.headers["webhook-id"]: r for r in receiver.requests}
    for event in events:
        request = by_id[event.id]
        assert request.method == "POST"
        assert request.path == "/hook"
        assert request.headers["content-type"] == "application/json"
        verify_standard_webhook(hook["secret"], request.headers, request.body)
        assert json.loads(request.body) == event.webhook_body()
        assert set(json.loads(request.body)) == {"id", "type", "created_at", "data"}
    assert {d["event_type"] for d in delivered} == {e.type for e in events}
    for delivery in delivered:
        assert delivery["attempts"] == 1
        assert delivery["last_status_code"] == 200
        assert delivery["next_attempt_at"] is None
        assert delivery["attempt_log"][0]["outcome"] == "success"
        assert delivery["attempt_log"][0]["response_body"] == "ok"


async def test_only_subscribed_enabled_endpoints_get_deliveries_once(
    harness: WebhooksHarness, receiver: Receiver
) -> None:
    encoded_only = await harness.create(receiver.url("/a"), events=["video.encoded"])
    everything = await harness.create(receiver.url("/b"))
    disabled = await harness.create(receiver.url("/c"))
    await harness.client.put(
        f"/api/v1/webhooks/{disabled['id']}",
        headers=auth(harness.account_id),
        json={"enabled": False},
    )
    other_account = new_id("acct")
    events = public_events(harness.account_id)
    # Every event twice (a redelivery), and an event of another account.
    await harness.publish(*events, *events, one_event(other_account))
    await harness.wait_for_deliveries(everything["id"], 5)
    await asyncio.sleep(0.2)
    assert len(await harness.deliveries(everything["id"])) == 5
    assert [d["event_type"] for d in await harness.deliveries(encoded_only["id"])] == [
        "video.encoded"
    ]
    assert await harness.deliveries(disabled["id"]) == []


async def test_fails_three_times_then_exactly_one_success(
    harness: WebhooksHarness, receiver: Receiver
) -> None:
    receiver.reply = lambda r, n: (500, {}, b"down") if n <= 3 else (200, {}, b"fine")
    hook = await harness.create(receiver.url())
    event = one_event(harness.account_id)
    await harness.publish(event)
    await harness.wait_for_deliveries(hook["id"], 1)
    async with harness.worker():
        [delivery] = await harness.wait_for_status(hook["id"], "succeeded")
        await asyncio.sleep(0.3)  # nothing more is sent after the success
    assert len(receiver.requests) == 4
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event.id}
    assert [r.body for r in receiver.requests] == [receiver.requests[0].body] * 4
    for request in receiver.requests:
        verify_standard_webhook(hook["secret"], request.headers, request.body)
    assert delivery["attempts"] == 4
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["http_error"] * 3 + ["success"]
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 500, 200]
    assert delivery["attempt_log"][0]["response_body"] == "down"
    assert delivery["delivered_at"] is not None
    endpoint = await harness.client.get(
        f"/api/v1/webhooks/{hook['id']}", headers=auth(harness.account_id)
    )
    assert endpoint.json()["enabled"] is True


async def test_gives_up_after_the_schedule(
    harness: WebhooksHarness, receiver: Receiver, ca_file: Path
) -> None:
    receiver.reply = lambda r, n: (503, {}, b"")
    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 1)
    async with harness.worker(receiver_settings(ca_file, retry_schedule=(0.05, 0.05))):
        [delivery] = await harness.wait_for_status(hook["id"], "failed")
    assert delivery["attempts"] == 3
    assert len(receiver.requests) == 3
    assert delivery["next_attempt_at"] is None


async def test_a_restarted_worker_still_delivers(
    harness: WebhooksHarness, receiver: Receiver, ca_file: Path
) -> None:
    receiver.reply = lambda r, n: (500, {}, b"") if n == 1 else (200, {}, b"")
    slow = receiver_settings(ca_file, retry_schedule=(1.0,) * 7)
    hook = await harness.create(receiver.url())
    event = one_event(harness.account_id)
    await harness.publish(event)
    await harness.wait_for_deliveries(hook["id"], 1)

    async def attempted_once() -> bool:
        return (
            len(receiver.requests) == 1
            and (await harness.deliveries(hook["id"]))[0]["attempts"] == 1
        )

    async with harness.worker(slow):
        await eventually(attempted_once)
    # The first worker is gone; the delivery waits in the database for its next attempt.
    [pending] = await harness.deliveries(hook["id"])
    assert pending["status"] == "pending"
    assert pending["next_attempt_at"] is not None
    async with harness.worker(slow):
        [delivery] = await harness.wait_for_status(hook["id"], "succeeded")
    assert len(receiver.requests) == 2
    assert delivery["attempts"] == 2
    assert {r.headers["webhook-id"] for r in receiver.requests} == {event.id}


async def test_410_disables_the_endpoint(harness: WebhooksHarness, receiver: Receiver) -> None:
    receiver.reply = lambda r, n: (410, {}, b"gone")
    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 1)
    async with harness.worker():
        [delivery] = await harness.wait_for_status(hook["id"], "failed")
    assert delivery["attempts"] == 1
    assert delivery["attempt_log"][0]["outcome"] == "gone"
    endpoint = (
        await harness.client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth(harness.account_id))
    ).json()
    assert endpoint["enabled"] is False
    assert endpoint["disabled_reason"] == "gone"
    # New events no longer make deliveries; a manual retry needs the endpoint enabled first.
    await harness.publish(one_event(harness.account_id))
    await asyncio.sleep(0.2)
    assert len(await harness.deliveries(hook["id"])) == 1
    retry = await harness.client.post(
        f"/api/v1/webhooks/deliveries/{delivery['id']}/retry", headers=auth(harness.account_id)
    )
    assert_error(retry, 409, "webhook_disabled")
    metrics = (await harness.client.get("/metrics")).text
    assert "avc_webhook_deliveries_created_total" in metrics


async def test_retry_after_is_honoured(harness: WebhooksHarness, receiver: Receiver) -> None:
    receiver.reply = lambda r, n: (503, {"Retry-After": "1"}, b"busy") if n == 1 else (200, {}, b"")
    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 1)
    async with harness.worker():  # schedule: 0.05 s
        [delivery] = await harness.wait_for_status(hook["id"], "succeeded")
    first, second = receiver.requests
    assert second.at - first.at >= 0.95
    assert delivery["attempt_log"][0]["retry_after_seconds"] == 1.0


def test_retry_after_forms() -> None:
    now = utcnow()
    assert parse_retry_after("120", now=now, cap=3600) == 120
    assert parse_retry_after("999999", now=now, cap=3600) == 3600
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert 85 <= (parse_retry_after(date, now=now, cap=3600) or 0) <= 90
    past = format_datetime(now - timedelta(seconds=90), usegmt=True)
    assert parse_retry_after(past, now=now, cap=3600) == 0
    assert parse_retry_after("soon", now=now, cap=3600) is None
    assert parse_retry_after(None, now=now, cap=3600) is None


async def test_redirects_are_not_followed(
    harness: WebhooksHarness, receiver: Receiver, ca_file: Path
) -> None:
    def reply(request: Received, n: int) -> Reply:
        if request.path == "/hook":
            return 307, {"Location": receiver.url("/elsewhere")}, b""
        return 200, {}, b""

    receiver.reply = reply
    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 1)
    async with harness.worker(receiver_settings(ca_file, retry_schedule=())):
        [delivery] = await harness.wait_for_status(hook["id"], "failed")
    assert [r.path for r in receiver.requests] == ["/hook"]
    attempt = delivery["attempt_log"][0]
    assert attempt["outcome"] == "redirect"
    assert attempt["status_code"] == 307
    assert "/elsewhere" in attempt["error"]


async def test_manual_retry_sends_again_now(
    harness: WebhooksHarness, receiver: Receiver, ca_file: Path
) -> None:
    answers: Iterator[Reply] = iter([(500, {}, b"no"), (200, {}, b"yes"), (200, {}, b"again")])
    receiver.reply = lambda r, n: next(answers)
    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 1)
    async with harness.worker(receiver_settings(ca_file, retry_schedule=())):
        [failed] = await harness.wait_for_status(hook["id"], "failed")
        response = await harness.client.post(
            f"/api/v1/webhooks/deliveries/{failed['id']}/retry", headers=auth(harness.account_id)
        )
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "pending"
        assert response.json()["next_attempt_at"] is not None
        [succeeded] = await harness.wait_for_status(hook["id"], "succeeded")
        # A delivery that succeeded can be sent again too.
        response = await harness.client.post(
            f"/api/v1/webhooks/deliveries/{failed['id']}/retry", headers=auth(harness.account_id)
        )
        assert response.status_code == 202

        async def third() -> bool:
            return bool((await harness.deliveries(hook["id"]))[0]["attempts"] == 3)

        await eventually(third)
    assert succeeded["attempts"] == 2
    assert len(receiver.requests) == 3
    assert len({r.headers["webhook-id"] for r in receiver.requests}) == 1


async def test_two_workers_never_send_the_same_attempt(
    harness: WebhooksHarness, receiver: Receiver
) -> None:
    hook = await harness.create(receiver.url())
    events = [one_event(harness.account_id) for _ in range(30)]
    await harness.publish(*events)
    await harness.wait_for_deliveries(hook["id"], 30)
    async with harness.worker(), harness.worker():
        await harness.wait_for_status(hook["id"], "succeeded")
    counts = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert set(counts) == {e.id for e in events}
    assert set(counts.values()) == {1}


async def test_an_expired_lease_is_claimed_again(
    harness: WebhooksHarness, receiver: Receiver
) -> None:
    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 1)
    repo = WebhookRepository(harness.app.state.documents)
    # A worker claimed it with a short lease and died.
    claimed = await repo.claim_due(now=utcnow(), lease=timedelta(seconds=0.3), token="dead")
    assert claimed is not None
    assert await repo.claim_due(now=utcnow(), lease=timedelta(seconds=10), token="other") is None
    started = time.monotonic()
    async with harness.worker():
        await harness.wait_for_status(hook["id"], "succeeded")
    assert len(receiver.requests) == 1
    assert time.monotonic() - started >= 0.1
    # The dead worker's late result is not stored over the new one.
    stored = await repo.finish_attempt(
        claimed.id,
        token="dead",
        outcome=AttemptOutcome(DeliveryStatus.FAILED, updated_at=utcnow()),
        attempt=None,
    )
    assert stored is False


async def test_a_slow_receiver_times_out(harness: WebhooksHarness, ca_file: Path) -> None:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        hook = await harness.create(f"https://receiver.test:{port}/hook")
        await harness.publish(one_event(harness.account_id))
        await harness.wait_for_deliveries(hook["id"], 1)
        quick = receiver_settings(ca_file, timeout_seconds=0.3, retry_schedule=())
        async with harness.worker(quick):
            [delivery] = await harness.wait_for_status(hook["id"], "failed")
        assert delivery["attempt_log"][0]["outcome"] == "timeout"
        assert delivery["attempt_log"][0]["status_code"] is None
    finally:
        server.close()


async def test_worker_metrics_count_attempts_by_outcome(
    harness: WebhooksHarness, receiver: Receiver
) -> None:
    import httpx

    from avc_common.web import LifespanManager
    from avc_webhooks.worker import create_worker_app

    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 1)
    app = create_worker_app(
        harness.settings, webhook_settings=harness.webhook_settings, resolver=harness.resolver
    )
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://w") as client,
    ):
        await harness.wait_for_status(hook["id"], "succeeded")
        metrics = (await client.get("/metrics")).text
        assert (await client.get("/readyz")).status_code == 200
    assert 'avc_webhook_attempts_total{outcome="success"} 1.0' in metrics
    assert 'avc_webhook_attempts_total{outcome="blocked"} 0.0' in metrics
    assert app.state.service == "webhooks-worker"


async def test_an_endpoint_failing_for_too_long_is_disabled(
    harness: WebhooksHarness, receiver: Receiver, ca_file: Path
) -> None:
    receiver.reply = lambda r, n: (500, {}, b"")
    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id), one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 2)
    quick = receiver_settings(ca_file, retry_schedule=(0.1,) * 20, disable_after_seconds=0.5)
    async with harness.worker(quick):
        found = await harness.wait_for_status(hook["id"], "failed")
    endpoint = (
        await harness.client.get(f"/api/v1/webhooks/{hook['id']}", headers=auth(harness.account_id))
    ).json()
    assert endpoint["enabled"] is False
    assert endpoint["disabled_reason"] == "failing"
    assert all(d["attempts"] < 21 for d in found)
    # Enabling it again starts a new run.
    response = await harness.client.put(
        f"/api/v1/webhooks/{hook['id']}", headers=auth(harness.account_id), json={"enabled": True}
    )
    assert response.json()["enabled"] is True
    assert response.json()["disabled_reason"] is None


async def test_the_response_body_is_read_capped_and_stored_truncated(
    harness: WebhooksHarness, receiver: Receiver, ca_file: Path
) -> None:
    receiver.reply = lambda r, n: (500, {}, b"x" * 200_000)
    hook = await harness.create(receiver.url())
    await harness.publish(one_event(harness.account_id))
    await harness.wait_for_deliveries(hook["id"], 1)
    async with harness.worker(receiver_settings(ca_file, retry_schedule=())):
        [delivery] = await harness.wait_for_status(hook["id"], "failed")
    attempt = delivery["attempt_log"][0]
    assert attempt["status_code"] == 500
    assert attempt["response_body"] == "x" * 1024


async def test_the_poll_sends_due_deliveries_concurrently_up_to_the_limit(
    harness: WebhooksHarness, receiver: Receiver, ca_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One poll pass (on `avc_common.periodic`) starts every due delivery, never more than
    `concurrency` at once: with two attempts held, the other three stay unclaimed; released,
    all five arrive."""
    gate = asyncio.Event()
    holding: list[str] = []
    send = DeliveryWorker.deliver

    async def held(self: DeliveryWorker, delivery: Delivery, token: str) -> None:
        holding.append(delivery.id)
        await gate.wait()
        await send(self, delivery, token)

    monkeypatch.setattr(DeliveryWorker, "deliver", held)
    hook = await harness.create(receiver.url())
    await harness.publish(*(one_event(harness.account_id) for _ in range(5)))
    await harness.wait_for_deliveries(hook["id"], 5)
    deliveries = harness.app.state.documents.collection("deliveries")
    async with harness.worker(receiver_settings(ca_file, concurrency=2)) as app:
        await eventually(lambda: len(holding) == 2)
        poll = app.state.delivery_poll
        assert poll.running
        assert await deliveries.count({"endpoint_id": hook["id"], "lease_token": None}) == 3
        assert len(holding) == 2
        gate.set()
        await harness.wait_for_status(hook["id"], "succeeded")
        assert poll.stats.failures == 0
    assert len(receiver.requests) == 5
    assert len(set(holding)) == 5
    assert not poll.running  # stopped with the worker's lifespan
