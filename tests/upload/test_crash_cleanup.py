"""A crash at every step after the local store starts publishing an assembled upload (sidecar,
data, then the staging dir's removal, file by file) — injected with the store's fault hook, then
a restart on the same data dir: the client's retry of `complete` finishes with the same video id
and the file's SHA-256, and nothing of the upload is left in storage. An upload that ends
(DELETE, expiry) leaves no object behind either, even one a complete had assembled."""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.support.assertions import assert_error
from tests.upload.conftest import (
    ACCOUNT,
    MIB,
    FakeMedia,
    Harness,
    running_harness,
    upload_settings,
)

from avc_common.config import Settings
from avc_common.objects.capabilities import stored_digests
from avc_common.objects.local import LocalObjectStore

CHUNK = 5 * MIB
DATA = random.Random(23).randbytes(3 * CHUNK + 4321)
SHA256 = hashlib.sha256(DATA).hexdigest()


class Killed(Exception):
    """Raised by the fault hook where the process dies."""


@dataclass
class KillAt:
    """A fault hook that raises Killed at its `at`-th call (0: never) and records every step."""

    at: int
    steps: list[str] = field(default_factory=list)

    def __call__(self, step: str) -> None:
        self.steps.append(step)
        if len(self.steps) == self.at:
            raise Killed(f"killed after step {self.at} ({step})")


def _store(harness: Harness) -> LocalObjectStore:
    store = harness.objects
    assert isinstance(store, LocalObjectStore)
    return store


async def _all_chunks_stored(harness: Harness, *, resend: bool) -> str:
    init = await harness.init(len(DATA), filename="crash.mp4")
    upload_id = str(init["upload_id"])
    await harness.send_chunks(upload_id, DATA, CHUNK, [3, 0, 2, 1])
    if resend:  # a re-sent chunk: complete copies the parts instead of renaming `data`
        await harness.send_chunks(upload_id, DATA, CHUNK, [1])
    return upload_id


def _leftovers(settings: Settings) -> list[str]:
    internal = Path(settings.data_dir) / "objects" / ".avc"
    return sorted(
        str(p.relative_to(internal))
        for sub in ("multipart", "trash")
        for p in (internal / sub).rglob("*")
    )


async def _crash_then_retry(settings: Settings, *, at: int, resend: bool) -> list[str]:
    """Returns the steps the hook saw; asserts the retry after the crash at step `at`."""
    hook = KillAt(at)
    media = FakeMedia()  # one media service across the restart
    async with running_harness(settings, upload_settings(), media=media) as first:
        upload_id = await _all_chunks_stored(first, resend=resend)
        _store(first).fault_hook = hook
        response = await first.complete(upload_id)
        if at and len(hook.steps) >= at:
            assert_error(response, 500, "internal_error")
        else:
            assert response.status_code == 200, response.text
    async with running_harness(settings, upload_settings(), media=media) as second:  # restart
        assert not list((Path(settings.data_dir) / "objects" / ".avc" / "trash").iterdir())
        retried = await second.complete(upload_id)
        assert retried.status_code == 200, (at, hook.steps, retried.text)
        video = retried.json()
        expected = f"sources/{video['video_id']}/original"
        assert {(c["source_key"], c["sha256"]) for c in media.calls} == {(expected, SHA256)}
        assert list(media.videos) == [(ACCOUNT, upload_id)]
        assert await second.stored_bytes(video["video_id"]) == DATA
        digests = stored_digests(second.objects)
        assert digests is not None
        assert await digests.stored_sha256(expected) == SHA256
        assert _leftovers(settings) == []
        assert (await second.complete(upload_id)).json() == video
    return hook.steps


@pytest.mark.parametrize("resend", [False, True], ids=["in-place", "copied"])
async def test_a_crash_at_every_step_of_publish_and_clean_up_then_retry(
    tmp_path: Path, settings: Settings, resend: bool
) -> None:
    steps = await _crash_then_retry(
        settings.model_copy(update={"data_dir": tmp_path / "probe"}), at=0, resend=resend
    )
    # Publishing is two renames; the staging dir is renamed away, then emptied file by file.
    assert steps[:3] == ["publish:sidecar", "publish:data", "drop:renamed"]
    assert steps[-1] == "drop:removed"
    assert set(steps[3:-1]) == {"drop:unlinked"}
    assert len(steps) >= 3 + 4 + 1  # the manifest, the parts' records, at least
    for at in range(1, len(steps) + 1):
        await _crash_then_retry(
            settings.model_copy(update={"data_dir": tmp_path / f"at-{at}"}), at=at, resend=resend
        )


async def test_delete_removes_an_object_a_complete_assembled(harness: Harness) -> None:
    """An open upload whose object was assembled (a complete that went back to open)."""
    upload_id = await _all_chunks_stored(harness, resend=False)
    doc = await harness.app.state.documents.collection("uploads").find_one({"_id": upload_id})
    key = doc["source_key"]
    await harness.objects.put(key, DATA)
    deleted = await harness.client.delete(f"/api/v1/upload/{upload_id}", headers=harness.headers())
    assert deleted.status_code == 204, deleted.text
    assert not await harness.objects.exists(key)
    assert _leftovers(harness.settings) == []
    assert list(harness.media.videos) == []


async def test_expiry_removes_an_object_a_complete_assembled(settings: Settings) -> None:
    async with running_harness(settings, upload_settings(expiry_seconds=1)) as harness:
        init = await harness.init(len(DATA), filename="late.mp4")
        upload_id = init["upload_id"]
        doc = await harness.app.state.documents.collection("uploads").find_one({"_id": upload_id})
        await harness.objects.put(doc["source_key"], DATA)
        await asyncio.sleep(1.1)
        report = await harness.app.state.upload_service.sweep()
        assert report.expired == 1
        assert not await harness.objects.exists(doc["source_key"])
        assert_error(await harness.status(upload_id), 410, "upload_expired")
        assert (ACCOUNT, upload_id) not in harness.media.videos
