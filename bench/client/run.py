"""Benchmark: `avc upload` of a 1 GiB file through the gateway against the raw HTTP client of
bench/upload (`chunked_upload`: init, 4 chunks in flight, complete — no checksums, no resume
state, no progress), in the same run, on the same servers. Prints MB/s of each, their ratio
(target >= 0.9) and the peak RSS of the `avc` process.

The servers are those of `bench/upload --via-gateway`: the upload service and the gateway as
separate `avcaption serve` processes (in-process bus, temp data dir), media's register endpoint
a stub in this process (no encoding of the random bytes), an admin-made API key. `avc upload`
runs as the real command (`avc upload FILE --parallel 4 --json`), so its time includes starting
Python and importing httpx, pydantic, typer and rich (1-2 s on a busy 2-core machine); the raw
client runs in this process, already imported. The upload's own time, as `avc` reports it in
its JSON (`seconds`), gives a second ratio without that fixed cost. Each round runs both, the
first one alternating, so that a slow moment of the machine hits both; the stored file is
deleted after each upload.

    .venv/bin/python bench/client/run.py [--size-mib 1024] [--parallel 4] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.e2e.harness import Stack  # noqa: E402


def _bench_upload() -> Any:
    """bench/upload/run.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("bench_upload_run", ROOT / "bench/upload/run.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def avc_command() -> list[str]:
    script = Path(sys.executable).with_name("avc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avcaption_client.cli"]


SIDES = ("raw", "avc", "avc --no-checksum")
LABELS = {
    "avc": "avc upload (whole command):",
    "avc upload itself": "avc's upload itself (its JSON `seconds`):",
    "avc --no-checksum": "avc upload --no-checksum (whole command):",
}


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set size so far (VmHWM), or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run_avc(
    src: Path, url: str, key: str, parallel: int, work: Path, *extra: str
) -> dict[str, Any]:
    """Runs `avc upload`; returns its wall seconds, result and peak RSS (MB). The RSS is read
    from /proc while it runs (wait4's ru_maxrss would count the forked parent's pages)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    env.update(AVC_API_URL=url, AVC_API_KEY=key, XDG_CONFIG_HOME=str(work / "config"))
    args = [*avc_command(), "upload", str(src), "--parallel", str(parallel), "--json", *extra]
    out, err = work / "avc.out", work / "avc.err"
    peak = 0.0
    with out.open("wb") as stdout, err.open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=stdout, stderr=stderr)
        while proc.poll() is None:
            peak = max(peak, peak_rss_mb(proc.pid) or 0.0)
            time.sleep(0.05)
        seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"avc upload failed ({proc.returncode}): {err.read_text()}")
    [result] = json.loads(out.read_text())
    return {
        "seconds": seconds,
        "inner_seconds": result["seconds"],
        "video_id": result["video_id"],
        "rss_mb": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args()
    bench = _bench_upload()
    size = args.size_mib * bench.MIB
    work = Path(tempfile.mkdtemp(prefix="avc-bench-client-", dir=args.workdir))
    stack = Stack(work / "stack", bus_url="memory://")
    try:
        src = work / "source.bin"
        bench.make_source(src, size)
        media = bench.MediaStub()
        media_server, media_url = media.serve()
        quiet = {"AVC_LOG_LEVEL": "WARNING", "AVC_ACCESS_LOG": "0"}
        upload = stack.spawn("upload", env={"AVC_MEDIA_URL": media_url, **quiet})
        gateway = stack.spawn("gateway", env={"AVC_UPLOAD_URL": upload.url, **quiet})
        upload.wait_ready()
        gateway.wait_ready()
        key = stack.api_key()
        sources = stack.data_dir / "objects" / "sources"

        def drop(video_id: str) -> None:
            stored = sources / video_id / "original"
            if stored.stat().st_size != size:
                raise RuntimeError(f"stored {stored.stat().st_size} bytes, sent {size}")
            stored.unlink()

        mbs: dict[str, list[float]] = {side: [] for side in (*SIDES, "avc upload itself")}
        rss: list[float] = []
        mb = size / 1e6
        for round_no in range(1, args.rounds + 1):
            # Which goes first alternates; dirty pages of the last upload are flushed before
            # each run, so none inherits another's writeback.
            order = SIDES if round_no % 2 else SIDES[::-1]
            seconds: dict[str, float] = {}
            for side in order:
                os.sync()
                if side == "raw":
                    raw = asyncio.run(
                        bench.chunked_upload(gateway.url, key, src, size, args.parallel)
                    )
                    drop(raw["video_id"])
                    seconds["raw"] = raw["seconds"]
                    continue
                extra = ("--no-checksum",) if side == "avc --no-checksum" else ()
                cli = run_avc(src, gateway.url, key, args.parallel, work, *extra)
                drop(cli["video_id"])
                seconds[side] = cli["seconds"]
                if side == "avc":
                    seconds["avc upload itself"] = cli["inner_seconds"]
                    rss.append(cli["rss_mb"])
            for side, secs in seconds.items():
                mbs[side].append(mb / secs)
            shown = "   ".join(
                f"{side} {mbs[side][-1]:.1f} MB/s ({seconds[side]:.2f} s, "
                f"ratio {mbs[side][-1] / mbs['raw'][-1]:.2f})"
                for side in mbs
                if side != "raw"
            )
            print(
                f"round {round_no} ({order[0]} first): raw {mbs['raw'][-1]:.1f} MB/s "
                f"({seconds['raw']:.2f} s)   {shown}",
                flush=True,
            )
        media_server.should_exit = True
        raw_median = statistics.median(mbs["raw"])
        print(
            f"file: {args.size_mib} MiB, {args.parallel} chunks in flight, through the gateway, "
            f"{args.rounds} rounds; medians:"
        )
        print(f"  raw HTTP client (bench/upload, in this process): {raw_median:7.1f} MB/s")
        for side, label in LABELS.items():
            median = statistics.median(mbs[side])
            print(f"  {label:47} {median:7.1f} MB/s  ratio {median / raw_median:.2f}")
        print(f"ratio avc / raw: {statistics.median(mbs['avc']) / raw_median:.2f} (target >= 0.9)")
        print(f"avc peak RSS: {max(rss):.1f} MB")
    finally:
        stack.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
