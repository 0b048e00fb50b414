"""`media-worker`: encodes uploaded videos (`video.uploaded` on the queue `media.encode`).

How an encode is never lost, and never done twice at once:

- **Lease.** A worker first takes a lease on the video document (`lease_owner`,
  `lease_expires_at`, atomically, only while the video is `processing` and nobody else holds a
  live lease) and renews it every `AVC_MEDIA_LEASE_SECONDS / 4` while ffmpeg runs. When a renewal
  finds the lease gone (video deleted, or taken over after this worker stalled), the encode is
  cancelled. The result is recorded only while the lease is still held.
- **Ack after the result.** The bus message is acked when the handler returns, i.e. after the
  result (`ready`/`failed`) is stored. A worker killed mid-encode leaves it unacked: RabbitMQ
  hands it to another worker, which waits (at most two lease periods) for the dead worker's
  lease to run out and takes over.
- **Re-drive** (on start, then every `AVC_MEDIA_REDRIVE_INTERVAL_SECONDS`): a `processing`
  video whose lease ran out, or that no worker ever leased within
  `AVC_MEDIA_REDRIVE_AFTER_SECONDS` (the upload service died between registering and
  publishing, or the message was dead-lettered), is re-queued by republishing its
  `video.uploaded` event — with the original event id when a worker saw it (other consumers
  deduplicate on it), else a deterministic one (`video_uploaded_event_id`). After
  `AVC_MEDIA_MAX_ENCODE_ATTEMPTS` leases the video fails with `encode_failed` instead.
- **Outbox.** `video.encoded`/`video.failed` (and the API's `video.deleted`) are written into
  the video document in the same update as the state they announce, published, then removed;
  the re-drive publishes whatever a crash left there, and finishes interrupted deletes.
- **Idempotent.** An event for a video that is `ready`, `failed`, deleted or unknown is acked
  and ignored.

RabbitMQ's `consumer_timeout` (default 30 minutes) closes a channel whose delivery stays
unacked longer; the message is then redelivered while the first worker still encodes. The lease
makes that harmless (the second delivery waits, then finds the video held or finished), but a
deployment whose encodes can take longer should raise `consumer_timeout` above
`AVC_MEDIA_ENCODE_TIMEOUT_BASE_SECONDS + FACTOR x AVC_MEDIA_MAX_DURATION_SECONDS`. Heartbeats
keep flowing meanwhile: ffmpeg is a subprocess and every file operation is awaited, so the event
loop is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

import anyio.to_thread
import structlog
from fastapi import FastAPI
from pydantic import ValidationError

from avc_common.bus import Bus, BusError, InMemoryBus
from avc_common.config import Settings
from avc_common.events import (
    ErrorInfo,
    Event,
    RenditionInfo,
    VideoEncoded,
    VideoFailed,
    VideoUploaded,
    video_uploaded_event_id,
)
from avc_common.ids import new_token
from avc_common.logging import get_logger
from avc_common.objects import ObjectStore
from avc_common.periodic import periodic
from avc_common.runtime import Adapters, adapters_lifespan
from avc_common.timeutil import utcnow
from avc_common.web import (
    Lifespan,
    add_readiness_check,
    create_service_app,
    metrics_registry,
    package_version,
)
from avc_common.web.health import add_consumer_readiness_check
from avc_media import scratch
from avc_media.config import MediaSettings
from avc_media.encoding.ffmpeg import find_binaries
from avc_media.encoding.pipeline import EncodeOutput, Encoder, encode_failed
from avc_media.encoding.probe import MediaRejected
from avc_media.metrics import EncodeMetrics
from avc_media.playback import video_prefix
from avc_media.repository import (
    Deletions,
    Encoded,
    EncodeJobs,
    Rendition,
    Video,
    VideoError,
    ensure_indexes,
)
from avc_media.service import finish_delete, publish_outbox

COMPONENT: Final = "media-worker"
DATABASE: Final = "media"
QUEUE: Final = "media.encode"
ROUTING_KEYS: Final = ("video.uploaded",)
BUS_MAX_ATTEMPTS: Final = 5
BUS_RETRY_DELAY_SECONDS: Final = 5.0
_REDRIVE_BATCH: Final = 100
_REDRIVE_JITTER: Final = 0.2

log = get_logger(__name__)


def uploaded_event(video: Video) -> Event:
    """Returns the `video.uploaded` event that re-queues a stored video."""
    payload = VideoUploaded(
        video_id=video.id,
        upload_id=video.upload_id,
        filename=video.filename,
        title=video.title,
        size_bytes=video.size_bytes,
        sha256=video.sha256,
        source_key=video.source_key,
    )
    return Event(
        id=video.upload_event_id or video_uploaded_event_id(video.id),
        type=payload.type,
        occurred_at=video.created_at,
        account_id=video.account_id,
        request_id=video.request_id,
        data=payload.model_dump(mode="json"),
    )


class _LeaseLost(Exception):
    pass


class EncodeWorker:
    """Handles `video.uploaded` (see the module docstring) and re-drives stuck work."""

    def __init__(
        self,
        *,
        settings: MediaSettings,
        jobs: EncodeJobs,
        deletions: Deletions,
        objects: ObjectStore,
        bus: Bus,
        encoder: Encoder,
        metrics: EncodeMetrics,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.deletions = deletions
        self.objects = objects
        self.bus = bus
        self.encoder = encoder
        self.metrics = metrics
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{new_token(6)}"

    # ---- the consumer --------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        """Encodes the video an event names, unless it is done, gone or held elsewhere."""
        try:
            payload = VideoUploaded.model_validate(event.data)
        except ValidationError:
            log.error("encode_event_invalid", event_id=event.id)
            return
        with structlog.contextvars.bound_contextvars(
            video_id=payload.video_id, account_id=event.account_id, request_id=event.request_id
        ):
            video = await self.jobs.get(event.account_id, payload.video_id)
            if video is None or video.deleted:
                log.info("encode_skipped", reason="no such video")
                self.metrics.encodes.labels("skipped").inc()
                return
            if video.upload_event_id is None:
                await self.jobs.remember_upload_event(video.id, event.id)
            if not video.processing:
                log.info("encode_skipped", reason=f"already {video.status}")
                self.metrics.encodes.labels("skipped").inc()
                return
            leased = await self._acquire(video)
            if leased is None:
                self.metrics.encodes.labels("skipped").inc()
                return
            await self._encode(leased)

    async def _acquire(self, video: Video) -> Video | None:
        """Returns the video leased to this worker; waits up to two lease periods while another
        worker's lease is live (it may be a dead worker's), then leaves it to that worker."""
        lease = self.settings.lease_seconds
        started = time.monotonic()
        deadline = started + 2 * lease
        seen = video
        waiting_logged = False
        while True:
            leased = await self.jobs.acquire_lease(
                video.account_id, video.id, owner=self.owner, seconds=lease
            )
            if leased is not None:
                # Only when nothing changed the video since `seen` was read (a re-drive that
                # cleared the lease meanwhile stamped `queued_at` and counted it already).
                untouched = (
                    leased.queued_at == seen.queued_at
                    and leased.encode_attempts == seen.encode_attempts + 1
                )
                if untouched:
                    self._note_takeover(seen, via="redelivery", waited=time.monotonic() - started)
                return leased
            current = await self.jobs.get(video.account_id, video.id)
            if current is None or current.deleted or not current.processing:
                return None
            seen = current
            if time.monotonic() >= deadline:
                log.info("encode_skipped", reason="held by a live worker")
                return None
            if not waiting_logged:
                # Usually a redelivery after the holder died: nothing happens until its lease
                # runs out, so say who holds it and until when.
                log.info(
                    "encode_waiting_for_lease",
                    holder=current.lease_owner,
                    lease_expires_at=current.lease_expires_at,
                )
                waiting_logged = True
            await asyncio.sleep(min(lease / 4, max(0.05, deadline - time.monotonic())))

    def _note_takeover(self, before: Video, *, via: str, waited: float = 0.0) -> None:
        """Logs and counts a lease taken from another worker whose lease ran out (a lease that
        was released instead leaves no owner behind). Either path counts once per dead lease:
        the redelivered message's handler acquires it (`redelivery`), or the re-drive clears it
        and re-queues the video first (`redrive`), after which no handler sees the old owner."""
        holder, expires = before.lease_owner, before.lease_expires_at
        if not holder or holder == self.owner or expires is None:
            return
        now = utcnow()
        if expires > now:
            return  # released early (its encode failed and will be retried), not taken over
        self.metrics.lease_takeovers.inc()
        log.warning(
            "encode_lease_taken_over",
            via=via,
            previous_owner=holder,
            expired_seconds_ago=round((now - expires).total_seconds(), 1),
            waited_seconds=round(waited, 1),
            attempt=before.encode_attempts + 1,
        )

    async def _encode(self, video: Video) -> None:
        video_id = video.id
        if video.encode_attempts > self.settings.max_encode_attempts:
            await self._give_up(video)
            return
        task = asyncio.current_task()
        assert task is not None
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(video_id, lost, task), name="lease")
        self.metrics.queue_lag.observe(max(0.0, (utcnow() - video.created_at).total_seconds()))
        self.metrics.in_progress.inc()
        started = time.monotonic()
        outcome = "retry"
        try:
            outcome = await self._encode_and_record(video)
        except asyncio.CancelledError:
            if lost.is_set() and task.uncancel() == 0:
                log.warning("encode_lease_lost")
                outcome = "lost"
                return
            await self._release_quietly(video_id)
            raise
        except _LeaseLost:
            log.warning("encode_lease_lost")
            outcome = "lost"
        except Exception:
            log.exception("encode_error_will_retry")
            await self._release_quietly(video_id)
            raise
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self.metrics.in_progress.dec()
            self.metrics.encodes.labels(outcome).inc()
            self.metrics.seconds.labels(outcome).observe(time.monotonic() - started)

    async def _release_quietly(self, video_id: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(
                asyncio.wait_for(self.jobs.release_lease(video_id, owner=self.owner), 5)
            )

    async def _keep_lease(
        self, video_id: str, lost: asyncio.Event, task: asyncio.Task[Any]
    ) -> None:
        interval = self.settings.lease_heartbeat_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                held = await self.jobs.renew_lease(
                    video_id, owner=self.owner, seconds=self.settings.lease_seconds
                )
            except Exception:
                # The database is unreachable: keep encoding; recording the result checks the
                # lease again.
                log.warning("lease_renewal_failed", exc_info=True)
                continue
            if not held:
                lost.set()
                task.cancel()
                return

    async def _encode_and_record(self, video: Video) -> str:
        video_id = video.id
        try:
            async with self.encoder.encode(
                video_id=video_id, source_key=video.source_key
            ) as output:
                if not await self.jobs.renew_lease(
                    video_id, owner=self.owner, seconds=self.settings.lease_seconds
                ):
                    raise _LeaseLost()
                stored = await self.encoder.store(video_id, output)
                result, event = self._ready(video, output, stored)
        except MediaRejected as rejected:
            log.info("encode_rejected", code=rejected.code)
            error, event = self._failed(video, rejected)
            if not await self.jobs.finish(video_id, owner=self.owner, result=error, event=event):
                raise _LeaseLost() from None
            await self._publish(video_id, event)
            return "failed"
        if not await self.jobs.finish(video_id, owner=self.owner, result=result, event=event):
            await self._discard_output(video.account_id, video_id)
            raise _LeaseLost()
        self.metrics.video_seconds.inc(result.duration_seconds)
        log.info(
            "encode_finished",
            renditions=[r.name for r in result.renditions],
            renditions_bytes=stored,
            request_id=video.request_id,
        )
        await self._publish(video_id, event)
        return "ready"

    @staticmethod
    def _ready(video: Video, output: EncodeOutput, stored: int) -> tuple[Encoded, Event]:
        renditions = tuple(
            Rendition(
                name=r.rung.name,
                width=r.rung.width,
                height=r.rung.height,
                bitrate_kbps=round(r.average_bps / 1000),
                bandwidth=max(r.peak_bps, r.average_bps),
                average_bandwidth=r.average_bps,
                codecs=r.rung.codecs(audio=output.info.has_audio),
                segments=len(r.segments),
                bytes=r.media_bytes,
            )
            for r in output.renditions
        )
        result = Encoded(
            duration_seconds=output.duration_seconds,
            width=output.info.width,
            height=output.info.height,
            has_audio=output.info.has_audio,
            renditions=renditions,
            renditions_bytes=stored,
        )
        event = Event.of(
            VideoEncoded(
                video_id=video.id,
                duration_seconds=result.duration_seconds,
                width=result.width,
                height=result.height,
                renditions=[
                    RenditionInfo(
                        name=r.name, width=r.width, height=r.height, bitrate_kbps=r.bitrate_kbps
                    )
                    for r in renditions
                ],
                renditions_bytes=stored,
            ),
            account_id=video.account_id,
            request_id=video.request_id,
        )
        return result, event

    @staticmethod
    def _failed(video: Video, rejected: MediaRejected) -> tuple[VideoError, Event]:
        error = VideoError(code=rejected.code, message=rejected.message)
        event = Event.of(
            VideoFailed(video_id=video.id, error=ErrorInfo(code=error.code, message=error.message)),
            account_id=video.account_id,
            request_id=video.request_id,
        )
        return error, event

    async def _give_up(self, video: Video) -> None:
        attempts = self.settings.max_encode_attempts
        rejected = encode_failed(
            f"The video could not be encoded after {attempts} attempts. Re-export it as MP4 "
            "(H.264/AAC) and upload it again."
        )
        error, event = self._failed(video, rejected)
        if await self.jobs.finish(video.id, owner=self.owner, result=error, event=event):
            log.warning("encode_gave_up", attempts=attempts)
            self.metrics.encodes.labels("failed").inc()
            await self._publish(video.id, event)

    async def _discard_output(self, account_id: str, video_id: str) -> None:
        """Removes what this encode stored when the video was deleted meanwhile (another worker
        that took the video over stores its own output in place)."""
        current = await self.jobs.get(account_id, video_id)
        if current is None or current.deleted:
            await self.objects.delete_prefix(video_prefix(video_id))

    async def _publish(self, video_id: str, event: Event) -> None:
        try:
            await self.bus.publish(event)
        except BusError:
            # The event stays in the video's outbox; the re-drive sends it.
            log.warning("publish_deferred", event_type=event.type, event_id=event.id)
            return
        await self.jobs.sent(video_id, event.id)

    # ---- re-drive ------------------------------------------------------------------------------

    async def redrive_once(self, *, requeue_unstarted: bool = False) -> dict[str, int]:
        """Re-queues stuck encodes, sends parked events, finishes interrupted deletes; returns
        how many of each it handled. `requeue_unstarted`: every video no worker leased is
        re-queued now (the bus lost its messages: the in-process bus after a restart)."""
        counts = {"lease_expired": 0, "never_started": 0, "outbox": 0, "deletes": 0}
        now = utcnow()
        for video in await self.jobs.stale_leases(now=now, limit=_REDRIVE_BATCH):
            handled = await self._requeue(video)
            counts["lease_expired"] += handled
            if handled and video.encode_attempts < self.settings.max_encode_attempts:
                self._note_takeover(video, via="redrive")
        queued_before = now - timedelta(
            seconds=0 if requeue_unstarted else self.settings.redrive_after_seconds
        )
        for video in await self.jobs.never_started(
            queued_before=queued_before, limit=_REDRIVE_BATCH
        ):
            counts["never_started"] += await self._requeue(video)
        grace = now - timedelta(seconds=self.settings.lease_seconds)
        for video in await self.jobs.pending_outbox(before=grace, limit=_REDRIVE_BATCH):
            for event_id in await publish_outbox(self.bus, video):
                await self.jobs.sent(video.id, event_id)
                counts["outbox"] += 1
            await self.jobs.outbox_drained(video)
        for video in await self.jobs.unfinished_deletes(before=grace, limit=_REDRIVE_BATCH):
            await finish_delete(
                objects=self.objects, bus=self.bus, deletions=self.deletions, video=video
            )
            counts["deletes"] += 1
        for kind, n in counts.items():
            if n:
                self.metrics.redriven.labels(kind).inc(n)
        if any(counts.values()):
            log.info("redriven", **counts)
        return counts

    async def _requeue(self, video: Video) -> int:
        if video.encode_attempts >= self.settings.max_encode_attempts:
            rejected = encode_failed(
                f"The video could not be encoded after {video.encode_attempts} attempts. "
                "Re-export it as MP4 (H.264/AAC) and upload it again."
            )
            error, event = self._failed(video, rejected)
            if await self.jobs.fail_unleased(video.id, error=error, event=event):
                await self._publish(video.id, event)
                return 1
            return 0
        now = utcnow()
        if not await self.jobs.claim_requeue(video, now=now):
            return 0
        try:
            await self.bus.publish(uploaded_event(video))
        except BusError:
            await self.jobs.unclaim_requeue(video.id, queued_at=now)
            raise
        log.info("encode_requeued", video_id=video.id)
        return 1

    def redrive_pass(self, *, bus_forgets: bool) -> Callable[[int], Awaitable[object]]:
        """Returns one pass of the periodic re-drive (`avc_common.periodic`). `bus_forgets`: the
        bus keeps nothing across restarts, so the first pass re-queues every video no worker
        holds (should that pass fail, the `redrive_after_seconds` rule finds them later)."""

        async def run_once(pass_number: int) -> None:
            await self.redrive_once(requeue_unstarted=bus_forgets and pass_number == 0)

        return run_once


def scratch_root(settings: MediaSettings) -> Path:
    """Returns the folder every worker of this machine keeps its scratch folder in."""
    return settings.work_dir if settings.work_dir is not None else Path(tempfile.gettempdir())


def scratch_sweep_pass(
    root: Path, folder: scratch.ScratchFolder, settings: MediaSettings, metrics: EncodeMetrics
) -> Callable[[int], Awaitable[object]]:
    """Returns one pass of the periodic scratch sweep: marks this worker's folder as in use,
    then removes the folders of dead workers (`avc_media.scratch`)."""

    def sweep_once() -> scratch.Swept:
        folder.touch()
        return scratch.sweep(
            root, min_age=settings.scratch_orphan_min_age_seconds, keep=folder.path
        )

    async def run_once(pass_number: int) -> None:
        swept = await anyio.to_thread.run_sync(sweep_once)
        if swept.folders:
            metrics.scratch_swept_folders.inc(swept.folders)
            metrics.scratch_swept_bytes.inc(swept.bytes)
            log.info("scratch_swept", folders=swept.folders, bytes=swept.bytes)

    return run_once


def _worker_lifespan(settings: Settings, media_settings: MediaSettings) -> Lifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        binaries = find_binaries(media_settings)
        log.info("ffmpeg_selected", ffmpeg=binaries.ffmpeg)
        db = app.state.documents
        await ensure_indexes(db)
        metrics = EncodeMetrics(metrics_registry(app))
        root = scratch_root(media_settings)
        folder = await anyio.to_thread.run_sync(scratch.claim, root)
        app.state.scratch_folder = folder
        # Encodes go under this process's locked folder, so sweepers can tell they are alive.
        encode_settings = media_settings.model_copy(update={"work_dir": folder.path})
        worker = EncodeWorker(
            settings=media_settings,
            jobs=EncodeJobs(db),
            deletions=Deletions(db),
            objects=app.state.objects,
            bus=app.state.bus,
            encoder=Encoder(settings=encode_settings, binaries=binaries, objects=app.state.objects),
            metrics=metrics,
        )
        app.state.encode_worker = worker

        async def ffmpeg_ready() -> None:
            if not os.access(binaries.ffmpeg, os.X_OK):
                raise RuntimeError("ffmpeg is not executable")

        add_readiness_check(app, "ffmpeg", ffmpeg_ready)
        subscription = await app.state.bus.subscribe(
            QUEUE,
            ROUTING_KEYS,
            worker.handle,
            prefetch=media_settings.encode_concurrency,
            max_attempts=BUS_MAX_ATTEMPTS,
            retry_delay_seconds=BUS_RETRY_DELAY_SECONDS,
        )
        add_consumer_readiness_check(app, QUEUE, subscription)
        # The in-process bus (all-in-one) starts empty: what was queued before a restart is
        # gone, so the first re-drive re-queues every video not being encoded.
        forgets = isinstance(app.state.bus, InMemoryBus)
        try:
            async with (
                periodic(
                    "media-redrive",
                    media_settings.redrive_interval_seconds,
                    worker.redrive_pass(bus_forgets=forgets),
                    jitter=_REDRIVE_JITTER,
                ) as redrive,
                periodic(
                    "media-scratch-sweep",
                    media_settings.scratch_sweep_interval_seconds,
                    scratch_sweep_pass(root, folder, media_settings, metrics),
                    jitter=_REDRIVE_JITTER,
                ) as sweeper,
            ):
                app.state.media_redrive = redrive
                app.state.media_scratch_sweep = sweeper
                yield
        finally:
            await subscription.cancel()
            await anyio.to_thread.run_sync(folder.release)

    return lifespan


def create_worker_app(
    settings: Settings | None = None,
    *,
    adapters: Adapters | None = None,
    media_settings: MediaSettings | None = None,
) -> FastAPI:
    """Returns the encode worker: `/healthz`, `/readyz`, `/metrics`, and a lifespan that consumes
    `video.uploaded` on `media.encode` (`media_settings` default to the environment)."""
    settings = settings if settings is not None else Settings()
    media_settings = media_settings if media_settings is not None else MediaSettings()
    app = create_service_app(
        service=COMPONENT,
        settings=settings,
        lifespan=adapters_lifespan(
            service=DATABASE,
            settings=settings,
            adapters=adapters,
            needs=("documents", "objects", "bus"),
            then=_worker_lifespan(settings, media_settings),
        ),
        version=package_version("avc-media"),
    )
    app.state.media_settings = media_settings
    return app
