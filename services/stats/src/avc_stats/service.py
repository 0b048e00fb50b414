"""The stats service: counters from video events, view thresholds, and the API's reads.

How an event is counted exactly once (see also `repository`):

1. **claim** — the event is recorded in `inbox` (unique `_id` = event id, TTL) with a lease.
   Already `done`: only leftover markers are cleared. Leased by a live handler: left to it.
2. **video** — one atomic write changes the video's state *and* marks the event on it
   (`pending_ids` + the counter `delta` it owes the account), conditioned on the event not
   being marked yet (a compare-and-set on `version`; for views an `$inc` filtered on
   `pending_ids $ne id`). Re-running finds the marker and reuses the recorded delta.
3. **account** — one atomic `$inc` of the delta, conditioned on `applied $ne id` and pushing
   the id into `applied`: at most once, however often it is re-run.
4. view thresholds crossed by this view are recorded (`threshold_fires`, unique per video and
   threshold) with the `view.threshold` event to publish.
5. **finish** — the inbox document turns `done`; only then are the markers removed (account
   first, then video), so no crash point lets a re-run apply an event twice: before `done` the
   markers guard each write; after it the inbox does.
6. the recorded `view.threshold` events are published; a crash before that leaves them
   `published: false` and the periodic re-drive publishes them (same event id, so consumers
   deduplicate a second copy).

A handler that dies mid-way leaves its inbox lease to expire; `redrive` (on start and every
`AVC_STATS_REDRIVE_INTERVAL_SECONDS`) takes it over and finishes the event.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta
from typing import Final

from prometheus_client import CollectorRegistry, Counter

from avc_common.bus import Bus, BusError
from avc_common.events import Event, ViewThreshold
from avc_common.ids import new_id
from avc_common.logging import get_logger
from avc_common.timeutil import utcnow
from avc_stats.config import StatsSettings
from avc_stats.repository import (
    AccountCounters,
    Claim,
    Fire,
    InboxState,
    StatsRepository,
    VideoRecord,
    fire_id,
)
from avc_stats.state import HANDLED_TYPES, VIEW_TYPE, Delta, VideoState, delta, transition

DEFAULT_THRESHOLDS: Final = (100, 1000, 10000)

log = get_logger(__name__)


class StatsMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "avc_stats_events",
            "Video events handled by the stats consumer, by type and result.",
            ["type", "result"],
            registry=registry,
        )
        self.thresholds = Counter(
            "avc_stats_view_thresholds_fired",
            "View thresholds crossed (each video and threshold counts once).",
            registry=registry,
        )


class StatsService:
    def __init__(
        self,
        *,
        repository: StatsRepository,
        bus: Bus,
        settings: StatsSettings,
        metrics: StatsMetrics | None = None,
    ) -> None:
        self._repo = repository
        self._bus = bus
        self._settings = settings
        self._metrics = metrics
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._retention = timedelta(seconds=settings.dedupe_retention_seconds)

    # -- API ------------------------------------------------------------------------------

    async def get_stats(self, *, account_id: str) -> AccountCounters:
        """Returns the account's counters (zeros before its first event)."""
        return await self._repo.counters(account_id=account_id)

    async def get_thresholds(self, *, account_id: str) -> list[int]:
        """Returns the account's view thresholds (the defaults until it sets its own)."""
        stored = await self._repo.thresholds(account_id=account_id)
        return list(DEFAULT_THRESHOLDS) if stored is None else stored

    async def set_thresholds(self, *, account_id: str, views: list[int]) -> list[int]:
        """Returns the thresholds saved for the account (sorted, without duplicates)."""
        normalized = sorted(set(views))
        await self._repo.save_thresholds(account_id=account_id, views=normalized, now=utcnow())
        return normalized

    # -- events ---------------------------------------------------------------------------

    async def handle_event(self, event: Event) -> None:
        """Bus handler: counts one video event exactly once (see the module doc)."""
        if event.type not in HANDLED_TYPES:
            self._count(event.type, "ignored")
            return
        # A payload that does not validate raises: retried, then dead-lettered for a human.
        event.payload()
        video_id = str(event.data["video_id"])
        now = utcnow()
        claim = await self._repo.claim(event, now=now, lease=self._lease, retention=self._retention)
        if claim is Claim.BUSY:
            # Recorded in the inbox and leased to a live handler; if it dies, re-driven.
            self._count(event.type, "busy")
            return
        if claim is Claim.DONE:
            video = await self._repo.video(video_id)
            account_id = video.account_id if video else event.account_id
            await self._clear_markers(event.id, account_id=account_id, video_id=video_id)
            self._count(event.type, "duplicate")
            return
        try:
            await self._process(event, video_id)
        except Exception:
            with contextlib.suppress(Exception):
                await self._repo.release(event.id, now=utcnow())
            raise

    async def _process(self, event: Event, video_id: str) -> None:
        now = utcnow()
        if event.type == VIEW_TYPE:
            applied = await self._repo.add_view(
                video_id=video_id, account_id=event.account_id, event_id=event.id, now=now
            )
        else:

            def compute(before: VideoState) -> tuple[VideoState | None, Delta]:
                after = transition(before, event)
                if after == before:
                    return None, {}
                return after, delta(before, after)

            applied = await self._repo.transition_video(
                video_id=video_id,
                account_id=event.account_id,
                event_id=event.id,
                compute=compute,
                now=now,
            )
        # The account the video was first counted for is the one every later change goes to.
        account_id = applied.video.account_id if applied.video else event.account_id
        await self._repo.apply_to_account(
            account_id=account_id, event_id=event.id, delta=applied.delta
        )
        fires: list[Fire] = []
        if event.type == VIEW_TYPE and applied.delta and applied.video is not None:
            fires = await self._fire_thresholds(event, account_id, video_id, applied.video)
        await self._repo.finish(event.id, now=utcnow())
        await self._clear_markers(event.id, account_id=account_id, video_id=video_id)
        self._count(event.type, "applied")
        for fire in fires:
            await self._publish(fire)

    async def _fire_thresholds(
        self, event: Event, account_id: str, video_id: str, video: VideoRecord
    ) -> list[Fire]:
        """Returns the thresholds this view made the video cross, recorded as fired."""
        views = video.views
        due = [
            t
            for t in await self.get_thresholds(account_id=account_id)
            if t <= views and t not in video.fired
        ]
        out: list[Fire] = []
        for threshold in due:
            fire = Fire(
                id=fire_id(video_id, threshold),
                account_id=account_id,
                video_id=video_id,
                threshold=threshold,
                views=views,
                event_id=new_id("evt"),
                request_id=event.request_id,
                occurred_at=utcnow(),
            )
            # The unique `_id` makes exactly one of any concurrent views the one that fires.
            if await self._repo.record_fire(fire, now=utcnow()):
                out.append(fire)
                if self._metrics is not None:
                    self._metrics.thresholds.inc()
            await self._repo.remember_fired(video_id, threshold)
        return out

    async def _publish(self, fire: Fire) -> None:
        event = Event(
            id=fire.event_id,
            type=ViewThreshold.type,
            occurred_at=fire.occurred_at,
            account_id=fire.account_id,
            request_id=fire.request_id,
            data=ViewThreshold(
                video_id=fire.video_id, threshold=fire.threshold, views=fire.views
            ).model_dump(mode="json"),
        )
        try:
            await self._bus.publish(event)
        except BusError as exc:
            log.warning("view_threshold_publish_failed", event_id=event.id, error=str(exc))
            return
        await self._repo.mark_published(fire.id, now=utcnow())
        log.info(
            "view_threshold_published",
            event_id=event.id,
            video_id=fire.video_id,
            threshold=fire.threshold,
        )

    async def _clear_markers(self, event_id: str, *, account_id: str, video_id: str) -> None:
        # Account first: a crash in between leaves the video marker, which `redrive` finds and
        # clears with the account's.
        await self._repo.clear_account_marker(account_id, event_id)
        await self._repo.clear_video_marker(video_id, event_id)

    async def redrive(self) -> None:
        """Finishes events whose handler died, clears markers a crash left behind and
        publishes recorded `view.threshold` events that were not published."""
        now = utcnow()
        for event in await self._repo.stale_events(now=now):
            if not await self._repo.take_over(event.id, now=now, lease=self._lease):
                continue
            try:
                await self._process(event, event.data["video_id"])
                log.info("stats_event_redriven", event_id=event.id, type=event.type)
            except Exception as exc:
                log.warning("stats_redrive_failed", event_id=event.id, exc_info=exc)
        for video in await self._repo.videos_with_markers(updated_before=now - self._lease):
            states = await self._repo.event_states(list(video.pending_ids))
            for event_id in video.pending_ids:
                # Forgotten (past the retention) counts as done: it was finished long ago.
                if states.get(event_id, InboxState.DONE) is InboxState.DONE:
                    await self._clear_markers(
                        event_id, account_id=video.account_id, video_id=video.id
                    )
        grace = timedelta(seconds=self._settings.redrive_interval_seconds)
        for fire in await self._repo.unpublished_fires(created_before=now - grace):
            await self._publish(fire)

    def _count(self, event_type: str, result: str) -> None:
        if self._metrics is not None:
            self._metrics.events.labels(event_type, result).inc()
