"""`avcaption serve` on a terminal: human-readable log lines, then one banner once everything
is ready, naming the dashboard, /docs and the command that creates the first account. Run
under a pseudo-terminal, as `make run` in a shell is."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from tests.e2e.harness import avcaption_command, base_env, free_port

from avc_common.logging import json_logs_wanted
from avcaption.banner import admin_command, public_url

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run_on_a_terminal(
    tmp_path: Path, env: dict[str, str], *, until: str
) -> tuple[str, int, httpx.Response | None]:
    """Runs `serve` with a pty as stdout until `until` shows up; answers what it printed
    (colours stripped), the port, and the dashboard's answer right when `until` appeared."""
    port = free_port()
    master, slave = pty.openpty()
    args = ["serve", "--target", "all", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(
        [*avcaption_command(), *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=tmp_path,
    )
    os.close(slave)
    out = b""
    answer = None
    try:
        deadline = time.monotonic() + 60
        while until not in ANSI.sub("", out.decode(errors="replace")):
            assert time.monotonic() < deadline, out.decode(errors="replace")
            assert proc.poll() is None, out.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:  # EIO: the process closed the terminal (it exited)
                    raise AssertionError(out.decode(errors="replace")) from None
        answer = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=True, timeout=10)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        while True:  # the rest, up to the last line
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return ANSI.sub("", out.decode(errors="replace")).replace("\r\n", "\n"), port, answer


def test_a_terminal_gets_readable_lines_and_one_banner(tmp_path: Path) -> None:
    text, port, answer = run_on_a_terminal(tmp_path, base_env(), until="/docs")
    base = f"http://127.0.0.1:{port}"
    assert text.count("AVCaption is ready") == 1, text
    assert f"{base}/" in text
    assert f"{base}/docs" in text
    assert "avcaption admin create-account --email" in text
    assert str(tmp_path / "data") in text  # the admin command must find the same data
    # Ready means ready: the dashboard answered the moment the banner was out.
    assert answer is not None
    assert answer.status_code == 200
    assert "Log in" in answer.text
    lines = [line for line in text.splitlines() if line.strip()]
    assert not any(line.lstrip().startswith("{") for line in lines), text
    assert any("component_started" in line for line in lines), text


def test_avc_log_json_forces_json_on_a_terminal(tmp_path: Path) -> None:
    env = {**base_env(), "AVC_LOG_JSON": "1"}
    text, port, _ = run_on_a_terminal(tmp_path, env, until='"ready"')
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    ready = [r for r in records if r.get("event") == "ready"]
    assert len(ready) == 1, text
    assert ready[0]["dashboard_url"] == f"http://127.0.0.1:{port}/"
    assert ready[0]["docs_url"] == f"http://127.0.0.1:{port}/docs"
    assert "AVCaption is ready" not in text


def test_the_banner_names_urls_a_browser_here_can_open(monkeypatch: pytest.MonkeyPatch) -> None:
    assert public_url("0.0.0.0", 8080) == "http://localhost:8080/"
    assert public_url("::", 8080) == "http://localhost:8080/"
    assert public_url("::1", 9000) == "http://[::1]:9000/"
    assert public_url("10.0.0.5", 80) == "http://10.0.0.5:80/"
    monkeypatch.setattr(sys, "argv", [".venv/bin/avcaption", "serve"])
    assert admin_command(None) == (
        ".venv/bin/avcaption admin create-account --email you@example.com --plan enterprise"
    )
    monkeypatch.setattr(sys, "argv", ["/x/__main__.py", "serve"])
    assert admin_command(Path("/data dir")).startswith("AVC_DATA_DIR='/data dir' avcaption admin")


def test_json_unless_a_terminal_and_avc_log_json_wins() -> None:
    with open(os.devnull, "w") as sink:
        assert json_logs_wanted(None, sink) is True
        assert json_logs_wanted(False, sink) is False
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as terminal:
            assert json_logs_wanted(None, terminal) is False
            assert json_logs_wanted(True, terminal) is True
    finally:
        os.close(slave)
        os.close(master)
