"""Crash test, in a loop: a real `avcaption serve --target upload` process is SIGKILLed while it
completes a chunked upload (20 x 5 MiB by default, one chunk re-sent in every other run), then
restarted on the same data dir; the client's retry of `complete` must finish with the video id
the first attempt was given and the file's SHA-256, and storage must hold exactly that object
(no staging dir, no trash, no other object).

Where the kill lands:
- `step` runs: the process kills itself (SIGKILL) at one step of publishing the object or of
  removing its staging dir — the local store's fault hook (`LocalObjectStore.fault_hook`),
  installed by a wrapper that then runs the real `avcaption` CLI. The runs cycle through every
  step (sidecar renamed, data renamed, staging dir renamed away, each file unlinked, removed).
- `watch` runs (every 5th): no hook; this process SIGKILLs the server as soon as the object
  shows up at its key, i.e. somewhere in the clean-up after publishing (timing, not a hook).

Before the retry it also sends `DELETE` for the upload: that must answer 409 (a completion is
pending) and leave the object alone.

    .venv/bin/python bench/upload/kill_during_complete.py [--runs 50] [--chunks 20]

Prints one line per run and the totals; exits 1 if any run failed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import free_port, headers  # the upload benchmark's helpers

MIB = 1024 * 1024
CHUNK = 5 * MIB
SECRET = "kill-during-complete-" + "k" * 40

# Runs the real CLI after installing a fault hook that records each step and SIGKILLs the
# process at step N (never at 0).
WRAPPER = """
import os, signal, sys
from avc_common.objects.local import LocalObjectStore
at = int(os.environ.get("KILL_AT_STEP", "0"))
seen = []
def hook(step):
    seen.append(step)
    with open(os.environ["KILL_STEPS_LOG"], "a") as f:
        f.write(step + "\\n")
    if len(seen) == at:
        os.kill(os.getpid(), signal.SIGKILL)
plain_init = LocalObjectStore.__init__
def init(self, *args, **kwargs):
    plain_init(self, *args, **kwargs)
    self.fault_hook = hook  # at 0 it only records the steps
LocalObjectStore.__init__ = init
from avcaption.cli import main
sys.argv = ["avcaption", *sys.argv[1:]]
sys.exit(main())
"""


class Media:
    """Media's register, idempotent on upload id like the real one; remembers every call."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/internal/v1/videos/register")
        async def register(request: Request) -> dict[str, str]:
            body = json.loads(await request.body())
            self.calls.append(body)
            return {"video_id": body["video_id"], "embed_token": "tok", "status": "processing"}

    def serve(self) -> str:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        return f"http://127.0.0.1:{port}"


def start(
    data_dir: Path, media_url: str, log: Path, kill_at: int
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    env.update(
        AVC_INTERNAL_SECRET=SECRET,
        AVC_MEDIA_URL=media_url,
        AVC_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        KILL_AT_STEP=str(kill_at),
        KILL_STEPS_LOG=str(log.with_suffix(".steps")),
    )
    args = ["serve", "--target", "upload", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--data-dir", str(data_dir)]
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, *args], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"upload process exited:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("upload process not ready in 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(MIB):
            digest.update(block)
    return digest.hexdigest()


def storage_files(objects: Path) -> list[str]:
    """Every file under the objects root except sidecars and temp files."""
    found = []
    for path in objects.rglob("*"):
        rel = path.relative_to(objects).as_posix()
        if path.is_file() and not rel.startswith((".avc/meta/", ".avc/tmp/")):
            found.append(rel)
    return sorted(found)


@dataclass
class Outcome:
    mode: str
    step: str
    ok: bool
    detail: str


async def one_run(
    work: Path, media: Media, media_url: str, data: bytes, chunks: int, kill_at: int, resend: bool
) -> Outcome:
    data_dir, log = work / "data", work / "upload.log"
    mode = "step" if kill_at else "watch"
    proc, base = start(data_dir, media_url, log, kill_at)
    video_id = ""
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            init = await client.post(
                "/api/v1/upload/init",
                content=json.dumps({"filename": "crash.mp4", "size": len(data)}),
                headers=headers(SECRET),
            )
            init.raise_for_status()
            upload_id = init.json()["upload_id"]
            gate = asyncio.Semaphore(4)

            async def send(index: int) -> None:
                async with gate:
                    response = await client.post(
                        "/api/v1/upload/chunk",
                        content=data[index * CHUNK : (index + 1) * CHUNK],
                        headers=headers(
                            SECRET, **{"X-Upload-ID": upload_id, "X-Chunk-Index": str(index)}
                        ),
                    )
                    response.raise_for_status()

            order = list(range(chunks))
            random.shuffle(order)
            await asyncio.gather(*(send(i) for i in order))
            if resend:
                await send(chunks // 2)
            calls_before = len(media.calls)
            completing = asyncio.create_task(
                client.post(
                    "/api/v1/upload/complete",
                    content=json.dumps({"upload_id": upload_id}),
                    headers=headers(SECRET),
                )
            )
            if not kill_at:
                # Kill as soon as the assembled object is at its key (clean-up is under way).
                sources = data_dir / "objects" / "sources"
                deadline = time.monotonic() + 60
                while not any(sources.glob("*/original")):
                    if completing.done() or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0)
                proc.send_signal(signal.SIGKILL)
            try:
                first = await completing
                first_status = first.status_code
            except httpx.TransportError:
                first_status = 0
                proc.wait(30)
    finally:
        stop(proc)
    steps_log = log.with_suffix(".steps")
    steps = steps_log.read_text().split() if steps_log.exists() else []
    if kill_at:
        step = steps[kill_at - 1] if len(steps) >= kill_at else "-"
    else:  # how far the first process got before the kill (or the answer)
        step = f"{steps[-1] if steps else 'no step'} #{len(steps)}, answer {first_status or '-'}"
    if kill_at and first_status != 0:
        return Outcome(mode, step, False, f"not killed at step {kill_at} (answer {first_status})")
    if steps_log.exists():
        steps_log.unlink()
    proc, base = start(data_dir, media_url, log, 0)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            deleted = await client.delete(f"/api/v1/upload/{upload_id}", headers=headers(SECRET))
            retried = await client.post(
                "/api/v1/upload/complete",
                content=json.dumps({"upload_id": upload_id}),
                headers=headers(SECRET),
            )
    finally:
        stop(proc)
    problems = []
    if first_status not in (0, 200):
        problems.append(f"first complete answered {first_status}")
    if deleted.status_code != 409:
        problems.append(f"DELETE answered {deleted.status_code}")
    if retried.status_code != 200:
        problems.append(f"retry answered {retried.status_code}: {retried.text[:200]}")
    else:
        video_id = retried.json()["video_id"]
    expected = hashlib.sha256(data).hexdigest()
    calls = media.calls[calls_before:]
    if not calls or {c["video_id"] for c in calls} != {video_id}:
        problems.append(f"media saw {[c['video_id'] for c in calls]}, retry gave {video_id}")
    if {c["sha256"] for c in calls} != {expected}:
        problems.append("media was sent a wrong SHA-256")
    objects = data_dir / "objects"
    key = f"sources/{video_id}/original"
    if video_id and sha256_file(objects / key) != expected:
        problems.append("the stored file's SHA-256 is wrong")
    left = storage_files(objects)
    if left != [key]:
        problems.append(f"storage holds {left[:5]}")
    return Outcome(mode, step, not problems, "; ".join(problems) or f"{video_id} ok")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    data = random.Random(7).randbytes(args.chunks * CHUNK - 12345)
    media = Media()
    media_url = media.serve()
    # Steps of an in-place complete of N chunks: 2 renames to publish, the rename away, one
    # unlink per file (manifest, N claims, N slot markers), the rmdir. A re-send adds a file.
    steps = 2 + 1 + (1 + 2 * args.chunks) + 1
    outcomes = []
    root = Path(tempfile.mkdtemp(prefix="avc-kill-complete-"))
    try:
        step_runs = 0
        for run in range(args.runs):
            resend = run % 2 == 1
            kill_at = 0
            if run % 5 != 4:
                total = steps + (1 if resend else 0)
                # The named steps first (sidecar, data, renamed away, removed), then spread.
                named = [1, 2, 3, total]
                rest = list(range(4, total))
                j = step_runs - len(named)
                kill_at = named[step_runs] if j < 0 else rest[(j * 5) % len(rest)]
                step_runs += 1
            work = root / f"run-{run}"
            work.mkdir()
            outcome = await one_run(work, media, media_url, data, args.chunks, kill_at, resend)
            outcomes.append(outcome)
            copy = "copied" if resend else "in-place"
            where = f"step {kill_at} ({outcome.step})" if kill_at else f"by watch ({outcome.step})"
            print(
                f"run {run + 1:2d} {copy:8s} killed {where:40s} "
                f"{'OK' if outcome.ok else 'FAIL'} {outcome.detail}",
                flush=True,
            )
            if outcome.ok:
                shutil.rmtree(work)
    finally:
        if all(o.ok for o in outcomes):
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"failed runs kept under {root}")
    passed = sum(o.ok for o in outcomes)
    by_mode = {m: sum(1 for o in outcomes if o.mode == m) for m in ("step", "watch")}
    print(
        f"{passed}/{len(outcomes)} retries finished with the same video id and the right "
        f"SHA-256, storage holding only that object ({by_mode['step']} kills at a hook step, "
        f"{by_mode['watch']} timed)"
    )
    return 0 if passed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
