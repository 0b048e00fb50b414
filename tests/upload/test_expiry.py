"""Expiry: uploads not completed in time expire; the sweeper (a background task of the app)
aborts their multipart uploads; the record stays, so every later call answers 410."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from tests.support.assertions import assert_error, eventually
from tests.upload.conftest import (
    MIB,
    Harness,
    metric_value,
    running_harness,
    upload_settings,
)

from avc_common.config import Settings

CHUNK = 5 * MIB


def staging(harness: Harness) -> list[Path]:
    return list((Path(harness.objects.root) / ".avc" / "multipart").iterdir())  # type: ignore[attr-defined]


@pytest.mark.parametrize("limits", [upload_settings(expiry_seconds=1)])
async def test_sweeper_expires_and_removes_parts(harness: Harness) -> None:
    data = b"e" * (CHUNK + 1)
    init = await harness.init(len(data))
    upload_id = init["upload_id"]
    await harness.send_chunks(upload_id, data, CHUNK, [0])
    assert len(staging(harness)) == 1
    assert (await harness.app.state.upload_service.sweep()).expired == 0

    await asyncio.sleep(1.1)
    report = await harness.app.state.upload_service.sweep()
    assert report.expired == 1
    assert staging(harness) == []

    for response in (
        await harness.status(upload_id),
        await harness.chunk(upload_id, 1, b"e"),
        await harness.complete(upload_id),
        await harness.client.delete(f"/api/v1/upload/{upload_id}", headers=harness.headers()),
    ):
        assert_error(response, 410, "upload_expired")
    # Still 410 after another pass.
    assert (await harness.app.state.upload_service.sweep()).expired == 0
    assert_error(await harness.status(upload_id), 410, "upload_expired")
    metrics = (await harness.client.get("/metrics")).text
    assert metric_value(metrics, "avc_upload_expired_total") == 1


@pytest.mark.parametrize("limits", [upload_settings(expiry_seconds=1)])
async def test_a_request_after_expiry_expires_it_without_the_sweeper(harness: Harness) -> None:
    init = await harness.init(CHUNK * 2)
    await harness.send_chunks(init["upload_id"], b"x" * CHUNK * 2, CHUNK, [1])
    await asyncio.sleep(1.1)
    assert_error(await harness.chunk(init["upload_id"], 0, b"x" * CHUNK), 410, "upload_expired")
    assert staging(harness) == []
    assert_error(await harness.status(init["upload_id"]), 410, "upload_expired")


async def test_the_background_sweeper_runs_on_its_interval(settings: Settings) -> None:
    limits = upload_settings(expiry_seconds=1, sweep_interval_seconds=0.2)
    async with running_harness(settings, limits) as harness:
        init = await harness.init(CHUNK + 1)
        await harness.send_chunks(init["upload_id"], b"y" * CHUNK, CHUNK, [0])
        assert len(staging(harness)) == 1
        await eventually(lambda: staging(harness) == [], within=5)
        response = await harness.status(init["upload_id"])
        assert_error(response, 410, "upload_expired")


@pytest.mark.parametrize("limits", [upload_settings(expiry_seconds=1)])
async def test_completed_uploads_do_not_expire(harness: Harness) -> None:
    init = await harness.init(3)
    await harness.chunk(init["upload_id"], 0, b"abc")
    done = await harness.complete(init["upload_id"])
    assert done.status_code == 200
    await asyncio.sleep(1.1)
    assert (await harness.app.state.upload_service.sweep()).expired == 0
    again = await harness.complete(init["upload_id"])
    assert again.json() == done.json()
    assert (await harness.status(init["upload_id"])).json()["status"] == "completed"
