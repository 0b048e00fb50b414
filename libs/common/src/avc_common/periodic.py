"""One helper for every "run this every N seconds for the app's lifetime" job.

Modelled on Prefect's `LoopService` (`loop_seconds` + `run_once`): a pass runs at start (what a
crash left behind is finished at once), then one every `interval` seconds, spread by `jitter` so
replicas started together do not poll in lockstep. A failing pass is logged and counted; the next
one still comes on time. Leaving the context cancels the loop and waits for it, so no pass outlives
the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from avc_common.logging import get_logger

log = get_logger(__name__)

MIN_INTERVAL_SECONDS: Final = 0.01


@dataclass(slots=True)
class PeriodicStats:
    """What the loop has done so far (for tests, logs and readiness)."""

    passes: int = 0
    failures: int = 0
    last_error: str | None = None


@dataclass(slots=True)
class PeriodicTask:
    """Runs `run_once` every `interval` seconds (± `jitter` as a fraction) until stopped.

    `run_once` receives the pass number (0 for the first), so a job can do something special on
    its first pass (e.g. re-queue everything the in-process bus forgot across a restart).
    """

    name: str
    interval: float
    run_once: Callable[[int], Awaitable[object]]
    jitter: float = 0.0
    run_at_start: bool = True
    stats: PeriodicStats = field(default_factory=PeriodicStats)
    _task: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if self.interval < MIN_INTERVAL_SECONDS:
            raise ValueError(f"{self.name}: interval must be at least {MIN_INTERVAL_SECONDS} s")
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"{self.name}: jitter is a fraction in [0, 1)")

    def next_delay(self) -> float:
        """Returns the pause before the next pass, with jitter applied."""
        if not self.jitter:
            return self.interval
        return self.interval * random.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    async def _pass(self) -> None:
        number = self.stats.passes
        try:
            await self.run_once(number)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.failures += 1
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
            log.error("periodic_pass_failed", job=self.name, pass_number=number, exc_info=exc)
        finally:
            self.stats.passes += 1

    async def run(self) -> None:
        """Loops until cancelled."""
        if not self.run_at_start:
            await asyncio.sleep(self.next_delay())
        while True:
            await self._pass()
            await asyncio.sleep(self.next_delay())

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._task = asyncio.get_running_loop().create_task(self.run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()


@contextlib.asynccontextmanager
async def periodic(
    name: str,
    interval: float,
    run_once: Callable[[int], Awaitable[object]],
    *,
    jitter: float = 0.0,
    run_at_start: bool = True,
) -> AsyncIterator[PeriodicTask]:
    """Runs `run_once` periodically for the duration of the context; yields the task."""
    job = PeriodicTask(
        name=name, interval=interval, run_once=run_once, jitter=jitter, run_at_start=run_at_start
    )
    job.start()
    try:
        yield job
    finally:
        await job.stop()
