"""The local adapter killed (its fault hook raising) after every durable step of completing or
aborting a multipart upload, then reopened on the same root: the upload is either whole (every
part listed) or gone, never half there, and what a crash left in the trash is removed at start."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from avc_common.objects import LocalObjectStore, MultipartNotFound, ObjectNotFound, PartInfo

PART = 64 * 1024
KEY = "sources/vid_x/original"
PIECES = [bytes([n]) * PART for n in (1, 2)] + [b"\x03" * 999]
WHOLE = b"".join(PIECES)


class Killed(Exception):
    pass


@dataclass
class KillAt:
    at: int
    steps: list[str] = field(default_factory=list)

    def __call__(self, step: str) -> None:
        self.steps.append(step)
        if len(self.steps) == self.at:
            raise Killed(step)


async def _staged(store: LocalObjectStore, *, resend: bool) -> tuple[str, list[PartInfo]]:
    upload_id = await store.create_placed_multipart(KEY, part_size=PART)
    parts = [
        await store.put_part(KEY, upload_id, n, piece, size=len(piece))
        for n, piece in enumerate(PIECES, start=1)
    ]
    if resend:  # part 2 again: it lands in a file of its own and complete copies
        parts[1] = await store.put_part(KEY, upload_id, 2, PIECES[1], size=PART)
    return upload_id, parts


async def _crash(root: Path, at: int, *, resend: bool, abort: bool) -> tuple[str, list[str]]:
    store = LocalObjectStore(root)
    await store.start()
    upload_id, parts = await _staged(store, resend=resend)
    hook = KillAt(at)
    store.fault_hook = hook
    try:
        if abort:
            await store.abort_multipart(KEY, upload_id)
        else:
            await store.complete_multipart(KEY, upload_id, parts)
    except Killed:
        pass
    finally:
        await store.close()
    return upload_id, hook.steps


def _internal(root: Path, sub: str) -> list[str]:
    return os.listdir(root / ".avc" / sub)


@pytest.mark.parametrize("abort", [False, True], ids=["complete", "abort"])
@pytest.mark.parametrize("resend", [False, True], ids=["in-place", "copied"])
async def test_killed_at_every_step_leaves_the_upload_whole_or_gone(
    tmp_path: Path, resend: bool, abort: bool
) -> None:
    _, steps = await _crash(tmp_path / "probe", 0, resend=resend, abort=abort)
    assert "drop:renamed" in steps
    assert steps[-1] == "drop:removed"
    for at in range(1, len(steps) + 1):
        root = tmp_path / f"at-{at}"
        upload_id, _ = await _crash(root, at, resend=resend, abort=abort)
        reopened = LocalObjectStore(root)
        await reopened.start()
        try:
            assert _internal(root, "trash") == []  # swept at start
            try:
                listed = await reopened.list_parts(KEY, upload_id)
            except MultipartNotFound:
                listed = None
            if listed is not None:  # still staged: whole
                assert [(p.part_number, p.size) for p in listed] == [
                    (1, PART),
                    (2, PART),
                    (3, 999),
                ], steps[at - 1]
            try:
                stored = await reopened.read_bytes(KEY)
            except ObjectNotFound:
                stored = None
            if abort:
                assert stored is None
            else:
                # Dropping the staging dir starts once the object is published.
                assert stored == WHOLE or steps[at - 1] == "publish:sidecar"
                if steps[at - 1].startswith("drop:"):
                    assert listed is None
                    info = await reopened.stat(KEY)
                    assert info.size == len(WHOLE)
                    assert await reopened.stored_sha256(KEY) is not None
            await reopened.abort_multipart(KEY, upload_id)
            assert _internal(root, "multipart") == []
            assert _internal(root, "trash") == []
        finally:
            await reopened.close()
