"""`avc upload` killed with SIGKILL mid-upload, then run again: it resumes the same upload and
sends only the chunks the server did not have (counted server-side: the upload service's
`avc_upload_chunks_total{outcome="ok"}`), and the video's SHA-256 is the file's."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import httpx
from tests.client.conftest import (
    MIB,
    Account,
    Server,
    avc_command,
    avc_env,
    eventually,
    random_file,
    run_avc,
    sha256_of,
)

from avcaption_client.uploads import state_path


def upload_status(server: Server, account: Account, upload_id: str) -> dict[str, object]:
    response = httpx.get(
        f"{server.url}/api/v1/upload/{upload_id}",
        headers={"X-API-Key": account.api_key},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    status: dict[str, object] = response.json()
    return status


def test_sigkilled_upload_resumes_with_only_the_missing_chunks(
    server: Server, account: Account, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "course.bin", 50 * MIB)
    env = avc_env(server, account, tmp_path)
    state_file = state_path(source)
    # --max-rate keeps the first run slow enough to be killed half way on any machine.
    first = subprocess.Popen(
        [*avc_command(), "upload", str(source), "--parallel", "4", "--max-rate", "8", "--json"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        eventually(state_file.exists, within=60)
        upload_id = json.loads(state_file.read_text())["upload_id"]

        def some_received() -> bool:
            received = upload_status(server, account, upload_id)["received"]
            assert isinstance(received, list)
            return len(received) >= 3

        eventually(some_received, within=60, interval=0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert first.stdout is not None
        assert first.stderr is not None
        first.stdout.close()
        first.stderr.close()
    assert first.returncode == -signal.SIGKILL

    # What was in flight when the process died settles (stored or dropped) on the server.
    previous: object = None
    while True:
        time.sleep(0.5)
        status = upload_status(server, account, upload_id)
        if status == previous:
            break
        previous = status
    missing = status["missing"]
    assert isinstance(missing, list)
    assert 0 < len(missing) < 10, status
    assert state_file.exists()
    before = server.chunks_accepted()

    second = run_avc("upload", str(source), "--json", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    [result] = json.loads(second.stdout)
    assert result["upload_id"] == upload_id
    assert result["resumed"] is True
    assert result["chunks_sent"] == len(missing)
    assert server.chunks_accepted() - before == len(missing)
    assert not state_file.exists()

    video = httpx.get(
        f"{server.url}/api/v1/videos/{result['video_id']}",
        headers={"X-API-Key": account.api_key},
        timeout=10,
    ).json()
    assert video["sha256"] == sha256_of(source)
    assert video["size_bytes"] == 50 * MIB
