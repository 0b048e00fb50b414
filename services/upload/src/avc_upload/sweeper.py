"""The background sweeper of one upload process: a pass at start, then one every
`AVC_UPLOAD_SWEEP_INTERVAL_SECONDS`. Every replica runs one; passes are safe to overlap
(each change is a conditional update, storage cleanup is idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from avc_common.logging import get_logger
from avc_upload.service import UploadService

log = get_logger(__name__)


async def run_sweeper(service: UploadService, *, interval_seconds: float) -> None:
    """Sweeps until cancelled; a failed pass is logged and the next one comes on time."""
    while True:
        try:
            report = await service.sweep()
        except Exception as exc:
            log.error("sweep_failed", error=str(exc), exc_info=exc)
        else:
            if report.expired or report.cleaned or report.redriven or report.reopened:
                log.info("sweep_done", **vars(report))
        await asyncio.sleep(interval_seconds)


@contextlib.asynccontextmanager
async def sweeper_running(
    service: UploadService, *, interval_seconds: float
) -> AsyncIterator[None]:
    """Runs the sweeper for the duration of the context."""
    task = asyncio.create_task(run_sweeper(service, interval_seconds=interval_seconds))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
