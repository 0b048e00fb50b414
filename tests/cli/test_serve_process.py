"""`avcaption serve --target all` as a real process: up, answering, and stopping cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

API_KEY = "avc_" + "5e" * 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def command() -> list[str]:
    script = Path(sys.executable).with_name("avcaption")
    return [str(script)] if script.exists() else [sys.executable, "-m", "avcaption"]


def wait_until_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> httpx.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"server exited early:\n{log.read_text()}"
        try:
            response = httpx.get(url, timeout=1)
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"not ready within 30 s:\n{log.read_text()}")


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_all_answers_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    port = free_port()
    data_dir = tmp_path / "data" / "nested"
    log = tmp_path / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    env["PYTHONUNBUFFERED"] = "1"
    args = ["serve", "--target", "all", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--data-dir", str(data_dir)]
    base = f"http://127.0.0.1:{port}"

    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [*command(), *args], stdout=sink, stderr=subprocess.STDOUT, env=env, cwd=tmp_path
        )
        try:
            ready = wait_until_ready(proc, f"{base}/readyz", log)
            assert ready.json()["status"] == "ready"
            missing = httpx.get(f"{base}/no/such/route?api_key={API_KEY}", timeout=5)

            proc.send_signal(stop)
            started = time.monotonic()
            code = proc.wait(timeout=15)
            elapsed = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    output = log.read_text()
    assert code == 0, output
    assert elapsed < 5, output
    assert data_dir.is_dir()

    request_id = missing.headers["x-request-id"]
    assert missing.status_code == 404
    assert missing.json() == {"error": "Not found.", "code": "not_found", "request_id": request_id}

    # Every line is JSON (uvicorn's too), and the api_key never reached the log.
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert API_KEY not in output
    access = [line for line in lines if line.get("logger") == "uvicorn.access"]
    assert any(line.get("request_id") == request_id for line in access)
    assert lines[-1]["event"] == "stopped"
