"""The upload process is killed (SIGKILL) between two chunks of an upload: a new upload
process on the same port takes the rest, the upload completes, and the stored file's SHA-256 is
the original's."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from tests.support.s3 import S3Server
from tests.support.videos import make_video

from .system import System, running_system, sha256_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def test_upload_killed_between_chunks_resumes_with_the_same_sha256(
    tmp_path: Path, moto_server: S3Server
) -> None:
    clip = make_video(tmp_path / "clip.mp4", seconds=3, video_bitrate="30M")  # ~11 MB: 3 chunks
    expected = sha256_of(clip)
    with running_system(tmp_path / "sys", moto_server, workers=()) as system:
        init = system.chunked_upload_start(clip, "Killed between chunks")
        upload_id, chunk_size, total = init["upload_id"], init["chunk_size"], init["total_chunks"]
        assert total >= 3, init
        for index in range(total - 1):
            assert system.send_chunk(upload_id, clip, index, chunk_size).status_code == 200

        port = system.stack["upload"].port
        pid = system.kill9("upload")
        while_down = system.send_chunk(upload_id, clip, total - 1, chunk_size)
        assert while_down.status_code == 503, while_down.text  # the gateway says so, in shape
        assert while_down.json()["code"] == "service_unavailable"

        started = time.monotonic()
        system.restart("upload", port=port, env=system.service_urls())
        restarted_in = time.monotonic() - started
        status = system.request("GET", f"/api/v1/upload/{upload_id}").json()
        assert status["missing"] == [total - 1], status
        assert status["received"] == list(range(total - 1)), status

        assert system.send_chunk(upload_id, clip, total - 1, chunk_size).status_code == 200
        completed = system.complete(upload_id)
        assert completed.status_code == 200, completed.text
        video = system.video(completed.json()["video_id"])
        assert video["sha256"] == expected, (video["sha256"], expected)
        assert video["size_bytes"] == clip.stat().st_size
        # The stored object itself, read back from S3, has the same digest.
        stored = moto_server.client().get_object(system.bucket, _source_key(system, video["id"]))
        try:
            data = stored.read()
        finally:
            stored.close()
            stored.release_conn()
        assert hashlib.sha256(data).hexdigest() == expected
        print(
            f"\nupload killed (pid {pid}) after {total - 1}/{total} chunks of "
            f"{clip.stat().st_size} bytes; new process ready in {restarted_in:.1f} s; "
            f"resumed with chunk {total - 1}; sha256 {expected[:16]}… identical"
        )


def _source_key(system: System, video_id: str) -> str:
    """Returns the key of the video's stored source (not its renditions under videos/)."""
    keys = [
        o.object_name
        for o in system.s3.client().list_objects(system.bucket, recursive=True)
        if o.object_name and video_id in o.object_name and not o.object_name.startswith("videos/")
    ]
    assert len(keys) == 1, keys
    return keys[0]
