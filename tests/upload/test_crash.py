"""Crash safety: a failure injected right after each durable step of a chunk or of `complete`
(standing in for the process dying there) leaves a state from which the client's retry of the
same call succeeds with the same video id and a byte-identical file; the sweeper finishes such
completions on its own too."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable

import pytest
from tests.support.assertions import assert_error
from tests.upload.conftest import (
    ACCOUNT,
    MIB,
    FlakyAdapters,
    Harness,
    running_harness,
    upload_settings,
)

from avc_common.config import Settings

CHUNK = 5 * MIB
DATA = random.Random(11).randbytes(2 * CHUNK + 777)


def _objects(h: Harness):  # type: ignore[no-untyped-def]
    adapters = h.adapters
    assert isinstance(adapters, FlakyAdapters)
    assert adapters.flaky_objects is not None
    return adapters.flaky_objects


def _bus(h: Harness):  # type: ignore[no-untyped-def]
    adapters = h.adapters
    assert isinstance(adapters, FlakyAdapters)
    assert adapters.flaky_bus is not None
    return adapters.flaky_bus


CRASH_POINTS: dict[str, tuple[Callable[[Harness], None], int, str]] = {
    # name: (arm the failure, status of the failed call, code)
    "after the store completed the object": (
        lambda h: _objects(h).crash_after.__setitem__("complete_multipart", 1),
        500,
        "internal_error",
    ),
    "after the object was recorded, before media answered": (
        lambda h: setattr(h.media, "fail_before", 1),
        503,
        "service_unavailable",
    ),
    "after media registered, before that was recorded": (
        lambda h: setattr(h.media, "fail_after", 1),
        503,
        "service_unavailable",
    ),
    "after registration, before publishing": (
        lambda h: setattr(_bus(h), "fail_before", 1),
        500,
        "internal_error",
    ),
    "after publishing, before completion was recorded": (
        lambda h: setattr(_bus(h), "fail_after", 1),
        500,
        "internal_error",
    ),
}


async def _upload_all_chunks(harness: Harness) -> str:
    init = await harness.init(len(DATA), filename="crash.mp4")
    await harness.send_chunks(init["upload_id"], DATA, CHUNK, [2, 0, 1])
    return str(init["upload_id"])


def _check_single_video(harness: Harness, upload_id: str, video: dict[str, str]) -> None:
    # Media was asked once or more, always for the same video, and knows exactly one.
    assert {c["video_id"] for c in harness.media.calls} == {video["video_id"]}
    assert {c["upload_id"] for c in harness.media.calls} == {upload_id}
    assert list(harness.media.videos) == [(ACCOUNT, upload_id)]
    assert harness.media.videos[(ACCOUNT, upload_id)]["embed_token"] == video["embed_token"]
    # Every publication is the same event (consumers deduplicate on its id).
    assert harness.events
    assert len({e.id for e in harness.events}) == 1
    event = harness.events[0]
    assert event.data["video_id"] == video["video_id"]
    assert event.data["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert {c["sha256"] for c in harness.media.calls} == {event.data["sha256"]}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
async def test_retry_after_a_crash_in_complete(settings: Settings, point: str) -> None:
    arm, status, code = CRASH_POINTS[point]
    async with running_harness(
        settings, upload_settings(), adapters=FlakyAdapters(settings)
    ) as harness:
        upload_id = await _upload_all_chunks(harness)
        arm(harness)
        failed = await harness.complete(upload_id)
        assert_error(failed, status, code)
        assert (await harness.status(upload_id)).json()["status"] == "completing"
        # No chunk is taken while a completion is pending.
        assert_error(await harness.chunk(upload_id, 0, DATA[:CHUNK]), 409, "upload_completed")

        retried = await harness.complete(upload_id)
        assert retried.status_code == 200, retried.text
        video = retried.json()
        assert await harness.stored_bytes(video["video_id"]) == DATA
        _check_single_video(harness, upload_id, video)
        # And from then on, always the same answer.
        assert (await harness.complete(upload_id)).json() == video
        assert (await harness.status(upload_id)).json()["video_id"] == video["video_id"]


@pytest.mark.parametrize(
    "point",
    ["after the store completed the object", "after media registered, before that was recorded"],
)
async def test_the_sweeper_finishes_an_interrupted_completion(
    settings: Settings, point: str
) -> None:
    arm, status, code = CRASH_POINTS[point]
    limits = upload_settings(redrive_after_seconds=0.001)
    async with running_harness(settings, limits, adapters=FlakyAdapters(settings)) as harness:
        upload_id = await _upload_all_chunks(harness)
        arm(harness)
        assert_error(await harness.complete(upload_id), status, code)

        report = await harness.app.state.upload_service.sweep()
        assert report.redriven == 1
        status_body = (await harness.status(upload_id)).json()
        assert status_body["status"] == "completed"
        # The client's retry gets the sweeper's result.
        retried = await harness.complete(upload_id)
        assert retried.status_code == 200
        video = retried.json()
        assert video["video_id"] == status_body["video_id"]
        assert await harness.stored_bytes(video["video_id"]) == DATA
        _check_single_video(harness, upload_id, video)


async def test_crash_after_a_chunk_was_stored_but_before_it_was_recorded(
    settings: Settings,
) -> None:
    async with running_harness(
        settings, upload_settings(), adapters=FlakyAdapters(settings)
    ) as harness:
        init = await harness.init(len(DATA), filename="crash.mp4")
        upload_id = init["upload_id"]
        await harness.send_chunks(upload_id, DATA, CHUNK, [0, 2])
        _objects(harness).crash_after["put_part"] = 1
        failed = await harness.chunk(upload_id, 1, DATA[CHUNK : 2 * CHUNK])
        assert_error(failed, 500, "internal_error")
        # The part is in storage, but not recorded: it is missing, and complete says so.
        status = (await harness.status(upload_id)).json()
        assert status["missing"] == [1]
        assert_error(await harness.complete(upload_id), 409, "upload_incomplete")

        await harness.send_chunks(upload_id, DATA, CHUNK, [1])
        done = await harness.complete(upload_id)
        assert done.status_code == 200
        assert await harness.stored_bytes(done.json()["video_id"]) == DATA


async def test_a_part_replaced_behind_the_records_back_is_reported_missing(
    harness: Harness,
) -> None:
    init = await harness.init(len(DATA), filename="swap.mp4")
    upload_id = init["upload_id"]
    await harness.send_chunks(upload_id, DATA, CHUNK, [0, 1, 2])
    # Someone (a racing request that lost its record) replaced part 2 in storage.
    doc = await harness.app.state.documents.collection("uploads").find_one({"_id": upload_id})
    await harness.objects.put_part(
        doc["source_key"], doc["multipart_id"], 2, b"w" * CHUNK, size=CHUNK
    )
    body = assert_error(await harness.complete(upload_id), 409, "upload_incomplete")
    assert body["details"] == {"missing": [1]}
    status = (await harness.status(upload_id)).json()
    assert (status["status"], status["missing"]) == ("open", [1])
    await harness.send_chunks(upload_id, DATA, CHUNK, [1])
    done = await harness.complete(upload_id)
    assert done.status_code == 200
    assert await harness.stored_bytes(done.json()["video_id"]) == DATA


async def test_media_answering_nonsense_is_a_502_and_the_retry_works(harness: Harness) -> None:
    upload_id = await _upload_all_chunks(harness)
    harness.media.nonsense = 1
    assert_error(await harness.complete(upload_id), 502, "bad_gateway")
    done = await harness.complete(upload_id)
    assert done.status_code == 200
    _check_single_video(harness, upload_id, done.json())
