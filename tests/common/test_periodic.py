"""The periodic-task helper: first pass at start, survives failing passes, stops cleanly."""

from __future__ import annotations

import asyncio

import pytest
from tests.support.assertions import eventually

from avc_common.periodic import PeriodicTask, periodic


async def test_first_pass_runs_at_start_then_repeats() -> None:
    seen: list[int] = []

    async def once(number: int) -> None:
        seen.append(number)

    async with periodic("job", 0.02, once) as job:
        await eventually(lambda: len(seen) >= 3)
        assert job.running
    assert seen[:3] == [0, 1, 2]
    assert not job.running


async def test_run_at_start_false_waits_one_interval() -> None:
    seen: list[int] = []

    async def once(number: int) -> None:
        seen.append(number)

    async with periodic("job", 60, once, run_at_start=False):
        await asyncio.sleep(0.05)
        assert seen == []


async def test_a_failing_pass_is_counted_and_the_loop_goes_on() -> None:
    calls = 0

    async def once(number: int) -> None:
        nonlocal calls
        calls += 1
        if number == 0:
            raise RuntimeError("boom")

    async with periodic("job", 0.01, once) as job:
        await eventually(lambda: calls >= 3)
    assert job.stats.failures == 1
    assert job.stats.last_error == "RuntimeError: boom"
    assert job.stats.passes >= 3


async def test_leaving_the_context_cancels_a_pass_in_flight() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def once(number: int) -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with periodic("job", 1, once):
        await asyncio.wait_for(started.wait(), 5)
    assert cancelled.is_set()


async def test_jitter_stays_within_its_fraction() -> None:
    async def once(number: int) -> None:
        return None

    job = PeriodicTask(name="job", interval=10, run_once=once, jitter=0.2)
    delays = [job.next_delay() for _ in range(500)]
    assert min(delays) >= 8.0
    assert max(delays) <= 12.0
    assert max(delays) - min(delays) > 1.0  # it really spreads


@pytest.mark.parametrize(("interval", "jitter"), [(0, 0.0), (-1, 0.0), (1, 1.0), (1, -0.1)])
def test_bad_settings_are_refused(interval: float, jitter: float) -> None:
    async def once(number: int) -> None:
        return None

    with pytest.raises(ValueError, match="job"):
        PeriodicTask(name="job", interval=interval, run_once=once, jitter=jitter)


async def test_start_twice_is_refused() -> None:
    async def once(number: int) -> None:
        await asyncio.sleep(3600)

    job = PeriodicTask(name="job", interval=1, run_once=once)
    job.start()
    try:
        with pytest.raises(RuntimeError, match="already running"):
            job.start()
    finally:
        await job.stop()
