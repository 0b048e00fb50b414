"""Benchmark: a 1 GiB chunked upload (4 chunks in flight) into local storage, against writing
the same bytes with a plain file copy, in one run. Prints MB/s of both, their ratio, and the
peak RSS of the upload process (and of the gateway with --via-gateway).

The upload service runs as its own process (`avcaption serve --target upload`, with
AVC_INTERNAL_SECRET) so its memory can be measured; the benchmark calls it directly with a
minted internal token, as the gateway would. Media's "register" is a stub served from this
process. Everything listens on 127.0.0.1 only.

    .venv/bin/python bench/upload/run.py [--size-mib 1024] [--parallel 4] [--via-gateway]

`--via-gateway` also runs the same upload through a gateway process in front of the upload
process, with an admin-created API key (uses tests/e2e/harness.py to start it; while the
gateway app does not include its proxy yet, the e2e launcher's wiring is used).

Targets: ratio >= 0.5, peak RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import uvicorn
from fastapi import FastAPI, Request

from avc_common.internal_auth import INTERNAL_TOKEN_HEADER, Caller, mint_internal_token

MIB = 1024 * 1024
CONTENT_TYPE = "application/x-www-form-urlencoded"  # what the seed's curl sends


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def avcaption() -> list[str]:
    script = Path(sys.executable).with_name("avcaption")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avcaption"]


def peak_rss_mb(pid: int) -> float:
    """Returns the process's peak resident set size (VmHWM) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError("no VmHWM in /proc status")


def cpu_seconds(proc: psutil.Process) -> float:
    """Returns the user+system CPU seconds `proc` has used so far."""
    times = proc.cpu_times()
    return float(times.user + times.system)


def make_source(path: Path, size: int) -> None:
    """Writes `size` incompressible bytes (a 64 MiB random block repeated)."""
    block = os.urandom(64 * MIB)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, len(block))
            f.write(block[:n])
            left -= n


def plain_copy(src: Path, dst: Path) -> float:
    """Returns the seconds a plain read/write copy takes (1 MiB buffer, fsync at the end)."""
    start = time.perf_counter()
    with src.open("rb") as fin, dst.open("wb") as fout:
        shutil.copyfileobj(fin, fout, MIB)
        fout.flush()
        os.fsync(fout.fileno())
    return time.perf_counter() - start


class MediaStub:
    """Media's register endpoint: answers a fixed embed token, remembers what it was sent."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.app = FastAPI()

        @self.app.post("/internal/v1/videos/register")
        async def register(request: Request) -> dict[str, str]:
            body = json.loads(await request.body())
            self.calls.append(body)
            return {"video_id": body["video_id"], "embed_token": "bench", "status": "processing"}

    def serve(self) -> tuple[uvicorn.Server, str]:
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        return server, f"http://127.0.0.1:{port}"


def start_upload_process(
    data_dir: Path, secret: str, media_url: str, log: Path
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    env.update(
        AVC_INTERNAL_SECRET=secret,
        AVC_MEDIA_URL=media_url,
        AVC_LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
    )
    args = ["serve", "--target", "upload", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--data-dir", str(data_dir)]
    proc = subprocess.Popen(
        [*avcaption(), *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
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


def headers(secret: str, **extra: str) -> dict[str, str]:
    """A minted internal token (direct calls), or `secret` as the API key ("avc_…", through
    the gateway)."""
    if secret.startswith("avc_"):
        return {"X-API-Key": secret, "Content-Type": CONTENT_TYPE, **extra}
    caller = Caller(account_id="acct_" + "b" * 25, plan="enterprise", request_id=None)
    return {
        INTERNAL_TOKEN_HEADER: mint_internal_token(caller, secret=secret, ttl_seconds=3600),
        "Content-Type": CONTENT_TYPE,
        **extra,
    }


async def chunked_upload(
    base: str, secret: str, src: Path, size: int, parallel: int
) -> dict[str, Any]:
    """Returns timings of init + every chunk (`parallel` in flight) + complete."""
    limits = httpx.Limits(max_connections=parallel + 2)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        start = time.perf_counter()
        init = await client.post(
            "/api/v1/upload/init",
            content=json.dumps({"filename": "bench.bin", "size": size}),
            headers=headers(secret),
        )
        init.raise_for_status()
        plan = init.json()
        upload_id, chunk, total = plan["upload_id"], plan["chunk_size"], plan["total_chunks"]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(total):
            queue.put_nowait(index)

        async def worker() -> None:
            with src.open("rb") as f:
                while not queue.empty():
                    index = queue.get_nowait()
                    f.seek(index * chunk)
                    body = f.read(chunk)
                    response = await client.post(
                        "/api/v1/upload/chunk",
                        content=body,
                        headers=headers(
                            secret, **{"X-Upload-ID": upload_id, "X-Chunk-Index": str(index)}
                        ),
                    )
                    response.raise_for_status()

        await asyncio.gather(*(worker() for _ in range(parallel)))
        chunks_done = time.perf_counter()
        done = await client.post(
            "/api/v1/upload/complete",
            content=json.dumps({"upload_id": upload_id}),
            headers=headers(secret),
        )
        done.raise_for_status()
        end = time.perf_counter()
    return {
        "seconds": end - start,
        "chunk_seconds": chunks_done - start,
        "complete_seconds": end - chunks_done,
        "video_id": done.json()["video_id"],
        "chunks": total,
    }


def via_gateway(work: Path, src: Path, size: int, parallel: int, media_url: str) -> dict[str, Any]:
    """Runs the upload through a gateway process; returns the timings and both peak RSS."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.e2e.harness import Stack

    stack = Stack(work / "via-gateway", bus_url="memory://")
    try:
        upload = stack.spawn("upload", env={"AVC_MEDIA_URL": media_url, "AVC_LOG_LEVEL": "WARNING"})
        gateway = stack.spawn(
            "gateway", env={"AVC_UPLOAD_URL": upload.url, "AVC_LOG_LEVEL": "WARNING"}
        )
        upload.wait_ready()
        gateway.wait_ready()
        key = stack.api_key()
        procs = {"upload": psutil.Process(upload.pid), "gateway": psutil.Process(gateway.pid)}
        before = {name: cpu_seconds(proc) for name, proc in procs.items()}
        client_before = time.process_time()
        result = asyncio.run(chunked_upload(gateway.url, key, src, size, parallel))
        result["client_cpu"] = time.process_time() - client_before
        for name, proc in procs.items():
            result[f"{name}_cpu"] = cpu_seconds(proc) - before[name]
        result["upload_rss"] = peak_rss_mb(upload.pid)
        result["gateway_rss"] = peak_rss_mb(gateway.pid)
        stored = stack.data_dir / "objects" / "sources" / result["video_id"] / "original"
        assert stored.stat().st_size == size, "stored object has the wrong size"
    finally:
        stack.stop_all()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--via-gateway", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args()
    size = args.size_mib * MIB
    secret = secrets.token_hex(32)

    work = Path(tempfile.mkdtemp(prefix="avc-bench-upload-", dir=args.workdir))
    try:
        src = work / "source.bin"
        make_source(src, size)
        media = MediaStub()
        media_server, media_url = media.serve()
        data_dir = work / "data"
        proc, base = start_upload_process(data_dir, secret, media_url, work / "upload.log")
        try:
            start_rss = peak_rss_mb(proc.pid)
            server = psutil.Process(proc.pid)
            # The baseline, then the upload, with the page cache in the same state for both.
            copy_seconds = plain_copy(src, work / "copy.bin")
            (work / "copy.bin").unlink()
            cpu_before = cpu_seconds(server)
            client_before = time.process_time()
            result = asyncio.run(chunked_upload(base, secret, src, size, args.parallel))
            client_cpu = time.process_time() - client_before
            upload_cpu = cpu_seconds(server) - cpu_before
            upload_rss = peak_rss_mb(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)

        digest = hashlib.sha256()
        with src.open("rb") as f:
            while block := f.read(8 * MIB):
                digest.update(block)
        stored = data_dir / "objects" / "sources" / result["video_id"] / "original"
        assert stored.stat().st_size == size, "stored object has the wrong size"
        assert media.calls[-1]["sha256"] == digest.hexdigest(), "SHA-256 sent to media differs"
        stored.unlink()

        gateway_result = None
        if args.via_gateway:
            gateway_result = via_gateway(work, src, size, args.parallel, media_url)
            assert media.calls[-1]["sha256"] == digest.hexdigest(), "SHA-256 differs (gateway)"
        media_server.should_exit = True

        mb = size / 1e6
        copy_mbs = mb / copy_seconds
        print(f"file: {args.size_mib} MiB in {result['chunks']} chunks, {args.parallel} in flight")
        print(f"plain file copy (read/write, fsync):  {copy_mbs:8.1f} MB/s  ({copy_seconds:.2f} s)")
        for label, res in (("direct to upload", result), ("through gateway", gateway_result)):
            if res is None:
                continue
            mbs = mb / res["seconds"]
            print(
                f"chunked upload, {label + ':':18} {mbs:8.1f} MB/s  ({res['seconds']:.2f} s: "
                f"chunks {res['chunk_seconds']:.2f} s, complete {res['complete_seconds']:.2f} s)"
                f"  ratio {mbs / copy_mbs:.2f} (target >= 0.5)"
            )
        print(
            f"CPU seconds (user+system), direct run: upload process {upload_cpu:.2f}, "
            f"benchmark client {client_cpu:.2f}"
        )
        if gateway_result is not None:
            print(
                "CPU seconds, through gateway: "
                f"gateway {gateway_result['gateway_cpu']:.2f}, "
                f"upload {gateway_result['upload_cpu']:.2f}, "
                f"benchmark client {gateway_result['client_cpu']:.2f}"
            )
        print(
            f"upload process peak RSS (direct run): {upload_rss:.1f} MB "
            f"(after start {start_rss:.1f} MB; target < 200 MB)"
        )
        if gateway_result is not None:
            print(
                f"through gateway: upload peak RSS {gateway_result['upload_rss']:.1f} MB, "
                f"gateway peak RSS {gateway_result['gateway_rss']:.1f} MB"
            )
        print("sha256 of the stored file = source (as sent to media): ok")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
