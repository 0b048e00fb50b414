"""The `avc` command line as a real process: progress bars drawn on a pseudo-terminal, login
(stored key, or email/password traded for a key) into a 0600 profile, key and URL from the
environment or flags, the videos commands, `wait`, `--json`, and errors with their code and
request id."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import stat
import subprocess
import time
from pathlib import Path

from tests.client.conftest import (
    MIB,
    Account,
    Server,
    avc_command,
    avc_env,
    random_file,
    run_avc,
)
from tests.support.videos import make_video

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_pty(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 240) -> str:
    """Runs a command with stdout and stderr on a pseudo-terminal; returns all it drew."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the other side closed
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        assert proc.wait(30) == 0, b"".join(chunks).decode(errors="replace")[-3000:]
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return b"".join(chunks).decode(errors="replace")


def test_progress_bars_on_a_terminal(server: Server, account: Account, tmp_path: Path) -> None:
    first = random_file(tmp_path / "first.bin", 20 * MIB)
    second = random_file(tmp_path / "second.bin", 12 * MIB)
    env = avc_env(server, account, tmp_path, TERM="xterm-256color", COLUMNS="120", LINES="40")
    env.pop("NO_COLOR", None)
    # A bandwidth cap makes the upload last a few seconds: several frames get drawn.
    args = [*avc_command(), "upload", str(first), str(second), "--concurrency", "2"]
    drawn = run_in_pty([*args, "--max-rate", "12"], env, tmp_path)

    assert "\x1b[" in drawn  # a live display (cursor moves, colours), not plain lines
    text = ANSI.sub("", drawn)
    assert "total (2 files)" in text
    assert "first.bin" in text
    assert "second.bin" in text
    assert "MB/s" in text
    assert "ETA" in text
    # The total line went through several values on its way to the end.
    totals = set(re.findall(r"total \(2 files\)\s+\S*\s+([\d.]+)/33\.6 MB", text))
    assert len(totals) >= 3, totals
    assert "33.6/33.6 MB" in text
    assert "21.0/21.0 MB" in text
    assert "vid_" in text  # the result table


def test_login_stores_a_key_in_a_private_profile(
    server: Server, account: Account, tmp_path: Path
) -> None:
    env = avc_env(server, None, tmp_path)
    stored = run_avc("--api-key", account.api_key, "login", env=env, cwd=tmp_path)
    assert stored.returncode == 0, stored.stderr
    assert account.email in stored.stderr
    profile = tmp_path / "config" / "avcaption" / "config.json"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    saved = json.loads(profile.read_text())["profiles"]["default"]
    assert saved == {"api_url": server.url, "api_key": account.api_key}

    # No key in the environment any more: the profile's is used, for its URL too.
    without_url = {k: v for k, v in env.items() if k != "AVC_API_URL"}
    listed = run_avc("videos", "list", "--json", env=without_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "data" in json.loads(listed.stdout)


def test_login_trades_email_and_password_for_a_key(server: Server, tmp_path: Path) -> None:
    account = server.account()
    env = avc_env(server, None, tmp_path)
    traded = run_avc(
        "--profile",
        "work",
        "login",
        "--email",
        account.email,
        "--password-stdin",
        "--json",
        env=env,
        cwd=tmp_path,
        stdin=account.password + "\n",
    )
    assert traded.returncode == 0, traded.stderr
    out = json.loads(traded.stdout)
    assert out["account"]["email"] == account.email
    profile = tmp_path / "config" / "avcaption" / "config.json"
    assert stat.S_IMODE(profile.stat().st_mode) == 0o600
    key = json.loads(profile.read_text())["profiles"]["work"]["api_key"]
    assert key.startswith("avc_")
    assert key != account.api_key  # a new key, made for this machine
    stats = run_avc("--profile", "work", "stats", "--json", env=env, cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr

    wrong = run_avc(
        "login",
        "--email",
        account.email,
        "--password-stdin",
        env=env,
        cwd=tmp_path,
        stdin="not the password\n",
    )
    assert wrong.returncode == 1
    assert "code: invalid_credentials" in wrong.stderr
    assert re.search(r"request_id: \S+", wrong.stderr)


def test_flags_override_the_environment(server: Server, account: Account, tmp_path: Path) -> None:
    env = avc_env(server, account, tmp_path, AVC_API_KEY="avc_" + "0" * 64)
    refused = run_avc("stats", "--json", env=env, cwd=tmp_path)
    assert refused.returncode == 1
    error = json.loads(refused.stdout)
    assert error["code"] == "invalid_api_key"
    assert error["status"] == 401
    assert error["request_id"]
    accepted = run_avc("--api-key", account.api_key, "stats", "--json", env=env, cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    dead = run_avc("--api-url", "http://127.0.0.1:9", "stats", env=env, cwd=tmp_path)
    assert dead.returncode == 1
    assert "error:" in dead.stderr
    no_key = run_avc("stats", env=avc_env(server, None, tmp_path), cwd=tmp_path)
    assert no_key.returncode == 2
    assert "no API key" in no_key.stderr


def test_videos_commands_and_wait(server: Server, account: Account, tmp_path: Path) -> None:
    clip = make_video(tmp_path / "talk.mp4", seconds=1, width=160, height=120)
    env = avc_env(server, account, tmp_path)
    up = run_avc("upload", str(clip), "--wait", "--title", "Talk", "--json", env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    [result] = json.loads(up.stdout)
    video_id = result["video_id"]
    assert result["video"]["status"] == "ready"

    waited = run_avc("wait", video_id, "--json", env=env, cwd=tmp_path)
    assert json.loads(waited.stdout)["status"] == "ready"
    got = run_avc("videos", "get", video_id, env=env, cwd=tmp_path)
    assert "Talk" in got.stdout
    assert video_id in got.stdout
    updated = run_avc(
        "videos",
        "update",
        video_id,
        "--title",
        "Renamed",
        "--visibility",
        "private",
        "--allowed-domain",
        "example.com",
        "--json",
        env=env,
        cwd=tmp_path,
    )
    assert updated.returncode == 0, updated.stderr
    video = json.loads(updated.stdout)
    assert (video["title"], video["visibility"], video["allowed_domains"]) == (
        "Renamed",
        "private",
        ["example.com"],
    )
    listed = run_avc("videos", "list", env=env, cwd=tmp_path)
    assert video_id in listed.stdout
    deleted = run_avc("videos", "delete", video_id, "--yes", env=env, cwd=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    missing = run_avc("videos", "get", video_id, env=env, cwd=tmp_path)
    assert missing.returncode == 1
    assert "code: not_found" in missing.stderr
    assert "status: 404" in missing.stderr


def test_wait_exits_1_for_a_failed_video(server: Server, account: Account, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 1000)
    env = avc_env(server, account, tmp_path)
    up = run_avc("upload", str(broken), "--json", env=env, cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    video_id = json.loads(up.stdout)[0]["video_id"]
    waited = run_avc("wait", video_id, env=env, cwd=tmp_path)
    assert waited.returncode == 1
    assert "failed" in waited.stdout


def peak_rss(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, float]:
    """Runs a command; returns its exit code and peak RSS in MiB (VmHWM, read while it runs)."""
    proc = subprocess.Popen(
        args, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    peak = 0.0
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            break
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024)
        time.sleep(0.02)
    return proc.wait(), peak


def test_upload_memory_stays_near_parallel_times_chunk_size(
    server: Server, account: Account, tmp_path: Path
) -> None:
    """Chunks are read straight from the file into one buffer per worker: the upload of a
    60 MiB file with 4 in flight costs about 4 x 5 MiB over the command's own footprint, not
    the file, and not every chunk ever read (freed chunks kept by thread arenas)."""
    source = random_file(tmp_path / "sixty.bin", 60 * MIB)
    env = avc_env(server, account, tmp_path)
    code, baseline = peak_rss([*avc_command(), "stats", "--json"], env, tmp_path)
    assert code == 0
    code, peak = peak_rss(
        [*avc_command(), "upload", str(source), "--parallel", "4", "--json"], env, tmp_path
    )
    assert code == 0
    assert peak - baseline < 3 * 4 * 5, (baseline, peak)
