"""Worker hygiene: scratch folders of dead workers are swept (never a live one's, even with a
shared scratch root), and a lease taken over from a dead worker is logged and counted."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from tests.media.conftest import (
    INTERNAL_SECRET,
    PLAYBACK_SECRET,
    Media,
    _MediaStack,
    media_settings,
)
from tests.media.test_worker_process import (
    AMQP_URL,
    Worker,
    _tail,
    rabbit,
)
from tests.support.assertions import eventually
from tests.support.logs import CapturedLogs, captured_logs
from tests.support.videos import make_video

from avc_common.config import Settings
from avc_common.events import Event, VideoUploaded
from avc_common.ids import new_id
from avc_common.timeutil import utcnow
from avc_media import scratch
from avc_media.config import MediaSettings
from avc_media.encoding.ffmpeg import find_binaries
from avc_media.encoding.pipeline import Encoder
from avc_media.metrics import EncodeMetrics
from avc_media.repository import Deletions, EncodeJobs
from avc_media.worker import EncodeWorker, scratch_sweep_pass

__all__ = ["rabbit"]  # the fixture, imported for the process test

HOUR = 3600.0

_HOLDER = """
import sys, time
from pathlib import Path
from typing import Any
from avc_media import scratch
folder = scratch.claim(Path(sys.argv[1]))
(folder.path / "avc-encode-vid_x-1").mkdir()
(folder.path / "avc-encode-vid_x-1" / "segment.ts").write_bytes(b"x" * 4096)
print(folder.path, flush=True)
time.sleep(600)
"""


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another process that owns a scratch folder under `tmp_path/root` (with 4 KiB in it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path / "root")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    path = Path(proc.stdout.readline().strip())
    try:
        yield proc, path
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_a_live_owners_folder_is_kept_and_a_killed_owners_is_swept(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], Path]
) -> None:
    proc, theirs = holder
    root = tmp_path / "root"
    mine = scratch.claim(root)
    try:
        # Alive: kept, whatever its age.
        assert scratch.sweep(root, min_age=0, keep=mine.path, now=time.time() + HOUR) == (
            scratch.Swept()
        )
        assert (theirs / "avc-encode-vid_x-1" / "segment.ts").is_file()
        owner = json.loads((theirs / scratch.MARKER).read_text())
        assert owner["pid"] == proc.pid
        assert owner["boot_id"] == scratch.boot_id()

        proc.send_signal(signal.SIGKILL)
        proc.wait()
        # Dead on this kernel: swept at once, however fresh.
        swept = scratch.sweep(root, min_age=HOUR, keep=mine.path)
        assert swept.folders == 1
        assert swept.bytes >= 4096
        assert not theirs.exists()
        assert mine.path.is_dir()
    finally:
        mine.release()
    assert not mine.path.exists()


def test_a_folder_another_claim_of_this_process_holds_is_kept(tmp_path: Path) -> None:
    # flock locks belong to the open file: two workers in one process (all-in-one) stay apart.
    first, second = scratch.claim(tmp_path), scratch.claim(tmp_path)
    try:
        assert scratch.sweep(tmp_path, min_age=0, keep=first.path, now=time.time() + HOUR) == (
            scratch.Swept()
        )
        assert second.path.is_dir()
    finally:
        first.release()
        second.release()


def _aged(path: Path, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            os.utime(Path(dirpath, name), (when, when))
        os.utime(dirpath, (when, when))


def test_folders_the_lock_cannot_vouch_for_go_only_once_idle(tmp_path: Path) -> None:
    root = tmp_path
    legacy = root / "avc-encode-vid_old-abc"  # an older version's encode folder
    (legacy / "out").mkdir(parents=True)
    (legacy / "out" / "seg.ts").write_bytes(b"s" * 100)
    remote = root / f"{scratch.PREFIX}remote"  # a worker on another machine (network volume)
    remote.mkdir()
    (remote / scratch.MARKER).write_text(json.dumps({"boot_id": "another-kernel", "pid": 1}))
    (remote / "partial.ts").write_bytes(b"r" * 200)
    unmarked = root / f"{scratch.PREFIX}unmarked"
    unmarked.mkdir()
    unrelated = root / "somebody-elses"
    unrelated.mkdir()
    (root / "avc-encode-not-a-folder").write_text("left alone")

    assert scratch.sweep(root, min_age=HOUR) == scratch.Swept()
    for path in (legacy, remote, unmarked):
        _aged(path, 2 * HOUR)
    # Something in the remote folder still changes: its worker is alive.
    (remote / "partial.ts").touch()
    _aged(unrelated, 2 * HOUR)

    assert scratch.sweep(root, min_age=HOUR) == scratch.Swept(folders=2, bytes=100)
    assert not legacy.exists()
    assert not unmarked.exists()
    assert remote.is_dir()
    assert unrelated.is_dir()
    assert (root / "avc-encode-not-a-folder").is_file()

    _aged(remote, 2 * HOUR)
    remote_bytes = 200 + (remote / scratch.MARKER).stat().st_size
    assert scratch.sweep(root, min_age=HOUR) == scratch.Swept(folders=1, bytes=remote_bytes)
    assert not remote.exists()


async def test_the_periodic_pass_counts_what_it_swept_and_keeps_its_own_folder_in_use(
    tmp_path: Path, holder: tuple[subprocess.Popen[str], Path]
) -> None:
    proc, theirs = holder
    root = tmp_path / "root"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    mine = scratch.claim(root)
    registry = CollectorRegistry()
    metrics = EncodeMetrics(registry)
    run_once = scratch_sweep_pass(root, mine, media_settings(root), metrics)
    try:
        _aged(mine.path, 2 * HOUR)
        await run_once(0)
        assert not theirs.exists()
        assert registry.get_sample_value("avc_media_scratch_swept_folders_total") == 1
        swept_bytes = registry.get_sample_value("avc_media_scratch_swept_bytes_total")
        assert swept_bytes is not None
        assert swept_bytes >= 4096
        # Its own marker was touched: another machine's sweeper sees it in use.
        assert time.time() - (mine.path / scratch.MARKER).stat().st_mtime < HOUR
        # Removed while idle by such a sweeper: the next pass sets it up again, locked.
        shutil.rmtree(mine.path)
        await run_once(1)
        assert mine.path.is_dir()
        owner = json.loads((mine.path / scratch.MARKER).read_text())
        assert owner["pid"] == os.getpid()
        assert scratch.sweep(root, min_age=0, now=time.time() + HOUR) == scratch.Swept()
    finally:
        mine.release()


@pytest.mark.slow
async def test_a_killed_workers_scratch_is_swept_and_its_lease_take_over_counted(
    tmp_path: Path, rabbit: tuple[str, str, set[str]]
) -> None:
    exchange, prefix, queues = rabbit
    data, work = tmp_path / "data", tmp_path / "work"
    settings = Settings(
        data_dir=data,
        bus_url=AMQP_URL,
        bus_exchange=exchange,
        bus_queue_prefix=prefix,
        internal_secret=SecretStr(INTERNAL_SECRET),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    env |= {
        "PYTHONUNBUFFERED": "1",
        "AVC_DATA_DIR": str(data),
        "AVC_BUS_URL": AMQP_URL,
        "AVC_BUS_EXCHANGE": exchange,
        "AVC_BUS_QUEUE_PREFIX": prefix,
        "AVC_INTERNAL_SECRET": INTERNAL_SECRET,
        "AVC_MEDIA_PLAYBACK_SECRET": PLAYBACK_SECRET,
        "AVC_MEDIA_X264_PRESET": "ultrafast",
        "AVC_MEDIA_LADDER": "720,360",
        "AVC_MEDIA_LEASE_SECONDS": "4",
        "AVC_MEDIA_REDRIVE_INTERVAL_SECONDS": "1",
        "AVC_MEDIA_WORK_DIR": str(work),  # one scratch root shared by both workers
        "AVC_LOG_JSON": "false",
    }
    clip = make_video(tmp_path / "clip.mp4", seconds=20, width=1280, height=720)
    log = tmp_path / "workers.log"
    workers: list[Worker] = []
    stack = _MediaStack(settings, media_settings(tmp_path / "api-work"), worker=False, record=False)
    media = await stack.__aenter__()
    try:
        async with asyncio.timeout(200):
            await _kill_one_mid_encode(media, env, clip, work, log, workers)
    except BaseException:
        print(f"---- worker log ----\n{_tail(log)}")
        raise
    finally:
        for worker in workers:
            worker.stop()
        bus = await media.adapters.bus()
        queues.update(getattr(bus, "declared_queues", ()))
        await stack.__aexit__(None, None, None)


def _folder_of(work: Path, pid: int) -> Path:
    for marker in work.glob(f"{scratch.PREFIX}*/{scratch.MARKER}"):
        if json.loads(marker.read_text()).get("pid") == pid:
            return marker.parent
    raise AssertionError(f"no scratch folder of pid {pid} in {sorted(work.iterdir())}")


def _bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


async def _metric(port: int, name: str) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"{name} not in /metrics")


async def _kill_one_mid_encode(
    media: Media, env: dict[str, str], clip: Path, work: Path, log: Path, workers: list[Worker]
) -> None:
    """Of two workers sharing the scratch root, the one that encodes is killed while ffmpeg
    writes segments; a new worker sweeps its folder, never the live bystander's; one of the
    two takes the lease over."""
    pair = [Worker(env, log), Worker(env, log)]
    workers.extend(pair)
    for worker in pair:
        await worker.ready()
    video_id = await media.upload("acct_a", clip)
    deadline = time.monotonic() + 60
    ffmpeg: list[psutil.Process] = []
    while not ffmpeg:
        assert time.monotonic() < deadline, _tail(log)
        for worker in pair:
            ffmpeg = [
                child
                for child in psutil.Process(worker.proc.pid).children(recursive=True)
                if "ffmpeg" in child.name()
            ]
            if ffmpeg:
                first, bystander = worker, next(w for w in pair if w is not worker)
                break
        await asyncio.sleep(0.05)
    first_folder = _folder_of(work, first.proc.pid)
    bystander_folder = _folder_of(work, bystander.proc.pid)

    def segments_written() -> bool:
        return any(first_folder.rglob("*.ts"))

    await eventually(segments_written, within=60, interval=0.05)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    psutil.wait_procs(ffmpeg, timeout=10)
    left = _bytes_under(first_folder)
    print(f"scratch left by the killed worker: {left} bytes")
    assert left > 0

    second = Worker(env, log)
    workers.append(second)
    await second.ready()
    # Its start sweep removes the dead worker's folder, never a live worker's.
    await eventually(lambda: not first_folder.exists(), within=30, interval=0.1)
    assert bystander_folder.is_dir()
    assert _folder_of(work, second.proc.pid).is_dir()
    swept = await _metric(second.port, "avc_media_scratch_swept_folders_total")
    swept_bytes = await _metric(second.port, "avc_media_scratch_swept_bytes_total")
    print(f"swept by the new worker: {swept:g} folder(s), {swept_bytes:g} bytes")
    assert swept == 1
    assert swept_bytes >= left

    video = await media.wait_status("acct_a", video_id, within=180)
    assert video["status"] == "ready", (video["error"], _tail(log))
    takeovers = [
        await _metric(worker.port, "avc_media_lease_takeovers_total")
        for worker in (bystander, second)
    ]
    print(f"lease take-overs (bystander, new worker): {takeovers}")
    assert sum(takeovers) == 1
    logged = await asyncio.to_thread(log.read_text)
    assert "encode_lease_taken_over" in logged


# ---- lease take-overs, in-process --------------------------------------------------------------


def _worker(media: Media, settings: MediaSettings, registry: CollectorRegistry) -> EncodeWorker:
    db = media.app.state.documents
    return EncodeWorker(
        settings=settings,
        jobs=EncodeJobs(db),
        deletions=Deletions(db),
        objects=media.objects,
        bus=media.bus,
        encoder=Encoder(settings=settings, binaries=find_binaries(settings), objects=media.objects),
        metrics=EncodeMetrics(registry),
        owner="the-new-worker",
    )


async def _registered(media: Media, lease: dict[str, object]) -> Event:
    video_id = new_id("vid")
    response = await media.register("acct_a", video_id=video_id)
    assert response.status_code == 201, response.text
    if lease:
        await media.app.state.documents.collection("videos").update_one(
            {"_id": video_id}, {"$set": lease}
        )
    return Event.of(
        VideoUploaded(
            video_id=video_id,
            upload_id="upl_x",
            filename="clip.mp4",
            size_bytes=1000,
            source_key=f"sources/{video_id}/original",
        ),
        account_id="acct_a",
    )


async def test_only_a_lease_that_ran_out_counts_as_taken_over(
    make_media: Callable[..., Any], tmp_path: Path
) -> None:
    settings = media_settings(tmp_path / "work", lease_seconds=2.0)
    registry = CollectorRegistry()
    with captured_logs() as logs:
        await _three_leases(make_media, settings, registry, logs)
    assert registry.get_sample_value("avc_media_lease_takeovers_total") == 1
    assert registry.get_sample_value("avc_media_encodes_total", {"outcome": "failed"}) == 3
    taken = [line for line in logs if line["event"] == "encode_lease_taken_over"]
    assert len(taken) == 1
    assert taken[0]["previous_owner"] == "dead-worker"
    assert taken[0]["expired_seconds_ago"] >= 5
    waiting = [line for line in logs if line["event"] == "encode_waiting_for_lease"]
    assert [line["holder"] for line in waiting] == ["live-worker"]


async def _three_leases(
    make_media: Callable[..., Any],
    settings: MediaSettings,
    registry: CollectorRegistry,
    logs: CapturedLogs,
) -> None:
    async with make_media() as media:
        worker = _worker(media, settings, registry)
        now = utcnow()
        # A dead worker's lease, run out: taken over (then the missing source fails it).
        dead = {"lease_owner": "dead-worker", "lease_expires_at": now - timedelta(seconds=5)}
        await worker.handle(await _registered(media, dead))
        assert registry.get_sample_value("avc_media_lease_takeovers_total") == 1
        # Never leased: a first encode, no take-over.
        await worker.handle(await _registered(media, {}))
        # Live, then released by its holder (its encode failed and will be retried): no take-over.
        live = {"lease_owner": "live-worker", "lease_expires_at": now + timedelta(seconds=30)}
        event = await _registered(media, live)
        handling = asyncio.create_task(worker.handle(event))
        await eventually(lambda: any(e["event"] == "encode_waiting_for_lease" for e in logs))
        video_id = event.data["video_id"]
        await media.app.state.documents.collection("videos").update_one(
            {"_id": video_id}, {"$unset": {"lease_owner": "", "lease_expires_at": ""}}
        )
        await asyncio.wait_for(handling, 30)


async def test_a_lease_the_redrive_clears_counts_once(
    make_media: Callable[..., Any], tmp_path: Path
) -> None:
    settings = media_settings(tmp_path / "work", lease_seconds=2.0)
    registry = CollectorRegistry()
    with captured_logs() as logs:
        async with make_media() as media:
            worker = _worker(media, settings, registry)
            dead = {
                "lease_owner": "dead-worker",
                "lease_expires_at": utcnow() - timedelta(seconds=5),
                "encode_attempts": 1,
            }
            event = await _registered(media, dead)
            video_id = str(event.data["video_id"])
            # A redelivered message's handler read the video before the re-drive cleared the
            # lease ...
            stale = await worker.jobs.get("acct_a", video_id)
            assert stale is not None
            assert stale.lease_owner == "dead-worker"
            counts = await worker.redrive_once()
            assert counts["lease_expired"] == 1
            assert registry.get_sample_value("avc_media_lease_takeovers_total") == 1
            # ... then takes the cleared lease: not a second take-over.
            leased = await worker._acquire(stale)
            assert leased is not None
            assert leased.lease_owner == "the-new-worker"
            await worker.jobs.release_lease(video_id, owner="the-new-worker")
    assert registry.get_sample_value("avc_media_lease_takeovers_total") == 1
    taken = [line for line in logs if line["event"] == "encode_lease_taken_over"]
    assert [(line["via"], line["previous_owner"]) for line in taken] == [("redrive", "dead-worker")]
