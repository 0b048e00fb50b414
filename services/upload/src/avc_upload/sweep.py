"""The background sweeper of one upload process: a pass at start, then one every
`AVC_UPLOAD_SWEEP_INTERVAL_SECONDS` (`avc_common.periodic`). Every replica runs one; passes are
safe to overlap (each change is a conditional update, storage cleanup is idempotent).

A pass expires overdue uploads (removing their parts), retries failed cleanups, and finishes
completions whose process died (`redrive_after_seconds` without progress)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from avc_common.logging import get_logger
from avc_common.periodic import PeriodicTask, periodic
from avc_upload.completion import Completion, UploadContext
from avc_upload.errors import UploadIncomplete

if TYPE_CHECKING:
    from avc_upload.service import UploadService

log = get_logger(__name__)

# A cleanup (abort of the parts, delete of a half-stored direct upload) that failed is retried
# by the sweeper after this long.
CLEANUP_RETRY: Final = timedelta(seconds=60)
SWEEP_BATCH: Final = 100


@dataclass
class SweepReport:
    expired: int = 0
    cleaned: int = 0
    redriven: int = 0
    reopened: int = 0
    failed: int = 0


class Sweeper:
    def __init__(self, ctx: UploadContext, completion: Completion) -> None:
        self._ctx = ctx
        self._completion = completion

    async def sweep(self) -> SweepReport:
        """Returns what one pass did."""
        ctx = self._ctx
        report = SweepReport()
        now = ctx.clock()
        while True:
            batch = await ctx.repo.sweeper_expired(now, limit=SWEEP_BATCH)
            for upload in batch:
                report.expired += await self._completion.expire(upload)
            if len(batch) < SWEEP_BATCH:
                break
        for upload in await ctx.repo.sweeper_cleanup(now - CLEANUP_RETRY, limit=SWEEP_BATCH):
            report.cleaned += await self._completion.cleanup(upload)
        stalled_before = now - timedelta(seconds=ctx.settings.redrive_after_seconds)
        redriven = ctx.metrics.redriven
        for upload in await ctx.repo.sweeper_stalled(stalled_before, limit=SWEEP_BATCH):
            await ctx.repo.touch(upload.account_id, upload.id, status=upload.status, now=now)
            try:
                await self._completion.drive(upload, upload.caller())
            except UploadIncomplete:
                report.reopened += 1
                redriven.labels(ctx.metrics.service, "reopened").inc()
            except Exception as exc:
                report.failed += 1
                redriven.labels(ctx.metrics.service, "error").inc()
                log.warning("redrive_failed", upload_id=upload.id, error=str(exc))
            else:
                report.redriven += 1
                redriven.labels(ctx.metrics.service, "completed").inc()
                log.info("redrive_completed", upload_id=upload.id)
        return report


@asynccontextmanager
async def sweeper_running(
    service: UploadService, *, interval_seconds: float
) -> AsyncIterator[PeriodicTask]:
    """Runs the sweeper for the duration of the context (a failed pass is logged by
    `periodic` and the next one comes on time)."""

    async def run_once(_: int) -> None:
        report = await service.sweep()
        if report.expired or report.cleaned or report.redriven or report.reopened:
            log.info("sweep_done", **vars(report))

    async with periodic("upload-sweeper", interval_seconds, run_once, jitter=0.1) as task:
        yield task
