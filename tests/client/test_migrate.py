"""`avc migrate` of a folder of five clips, one of them broken: 4 ok / 1 failed with a non-zero
exit; a re-run uploads nothing new (manifest), nor does one without the manifest (SHA-256 of
the account's videos)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from tests.client.conftest import Server, avc_env, run_avc
from tests.support.videos import make_video


def direct_uploads(server: Server) -> float:
    return server.metric(
        "avc_http_requests_total", route="/api/v1/upload", service="upload", method="POST"
    )


def total_videos(server: Server, key: str) -> int:
    response = httpx.get(f"{server.url}/api/v1/stats", headers={"X-API-Key": key}, timeout=10)
    total: int = response.json()["total_videos"]
    return total


@pytest.mark.slow
def test_migrate_a_folder_with_one_broken_file(server: Server, tmp_path: Path) -> None:
    account = server.account()
    library = tmp_path / "library"
    (library / "term-2").mkdir(parents=True)
    for i, seconds in enumerate((1.0, 1.2, 1.4)):
        make_video(library / f"lesson-{i + 1}.mp4", seconds=seconds, width=160, height=120)
    make_video(library / "term-2" / "lesson-4.mov", seconds=1.6, width=160, height=120)
    (library / "broken.mp4").write_bytes(b"this is not a video\n" * 4096)
    (library / "notes.txt").write_text("not a video file: left out")
    env = avc_env(server, account, tmp_path)

    first = run_avc("migrate", str(library), "--json", "--concurrency", "3", env=env, cwd=tmp_path)
    assert first.returncode == 1, first.stderr
    report = json.loads(first.stdout)
    assert report["summary"] == {"ok": 4, "failed": 1, "uploaded": 4, "skipped": 0}
    failed = [f for f in report["files"] if f["result"] == "failed"]
    assert [Path(f["path"]).name for f in failed] == ["broken.mp4"]
    assert failed[0]["video_status"] == "failed"
    assert failed[0]["code"]
    assert all(f["video_status"] == "ready" for f in report["files"] if f["result"] != "failed")
    manifest = library / ".avc-migrate.jsonl"
    assert len(manifest.read_text().splitlines()) == 5
    assert total_videos(server, account.api_key) == 5

    uploads_before = direct_uploads(server)
    second = run_avc("migrate", str(library), "--json", env=env, cwd=tmp_path)
    assert second.returncode == 1  # the broken file is still a failure
    again = json.loads(second.stdout)
    assert again["summary"] == {"ok": 4, "failed": 1, "uploaded": 0, "skipped": 4}
    assert direct_uploads(server) == uploads_before
    assert total_videos(server, account.api_key) == 5

    # Without the manifest, the SHA-256 of the account's videos still finds every file.
    manifest.unlink()
    third = run_avc("migrate", str(library), env=env, cwd=tmp_path)
    assert third.returncode == 1
    assert "4 ok" in third.stderr
    assert "1 failed" in third.stderr
    assert "broken.mp4" in third.stdout
    assert direct_uploads(server) == uploads_before
    assert total_videos(server, account.api_key) == 5


def test_migrate_from_a_csv_with_titles(
    server: Server, account_key_env: dict[str, str], tmp_path: Path
) -> None:
    clip = make_video(tmp_path / "a.mp4", seconds=0.8, width=160, height=120)
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,title\n{clip.name},Welcome\n")
    result = run_avc(
        "migrate", str(listing), "--json", "--no-wait", env=account_key_env, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["summary"]["uploaded"] == 1
    video_id = report["files"][0]["video_id"]
    video = httpx.get(
        f"{account_key_env['AVC_API_URL']}/api/v1/videos/{video_id}",
        headers={"X-API-Key": account_key_env["AVC_API_KEY"]},
        timeout=10,
    ).json()
    assert video["title"] == "Welcome"
    assert (tmp_path / "list.csv.avc-migrate.jsonl").exists()


@pytest.fixture
def account_key_env(server: Server, tmp_path: Path) -> dict[str, str]:
    return avc_env(server, server.account(), tmp_path)
