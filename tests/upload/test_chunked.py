"""Chunked uploads: the seed's three steps on a real video, resume, parallel and duplicate
chunks, checksums, and every error code of API.md "Upload" in the error shape."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from pathlib import Path

import pytest
from tests.support.assertions import assert_error
from tests.upload.conftest import (
    ACCOUNT,
    MIB,
    OTHER_ACCOUNT,
    Harness,
    metric_value,
    upload_settings,
)

from avc_upload.chunked import plan_chunks

CHUNK = 5 * MIB


async def test_seed_steps_on_a_real_video_4_parallel_random_order(
    harness: Harness, video_bytes: bytes, rng: random.Random
) -> None:
    data = video_bytes
    assert 20 * MIB < len(data) < 30 * MIB
    source_sha = hashlib.sha256(data).hexdigest()

    init = await harness.init(len(data))
    assert init["chunk_size"] == CHUNK
    assert init["total_chunks"] == -(-len(data) // CHUNK)
    assert init["upload_id"].startswith("upl_")
    assert init["expires_at"].endswith("Z")

    order = list(range(init["total_chunks"]))
    rng.shuffle(order)
    answers = await harness.send_chunks(init["upload_id"], data, CHUNK, order, parallel=4)
    for answer in answers:
        body = answer.json()
        assert set(body) == {"upload_id", "chunk_index", "received_chunks", "total_chunks"}
        assert body["upload_id"] == init["upload_id"]
        assert body["total_chunks"] == init["total_chunks"]
    assert max(a.json()["received_chunks"] for a in answers) == init["total_chunks"]

    done = await harness.complete(init["upload_id"])
    assert done.status_code == 200, done.text
    video = done.json()
    assert set(video) == {"video_id", "embed_token", "status"}
    assert video["status"] == "processing"
    assert video["video_id"].startswith("vid_")

    stored = await harness.stored_bytes(video["video_id"])
    assert hashlib.sha256(stored).hexdigest() == source_sha
    assert stored == data

    [call] = harness.media.calls
    assert call == {
        "account_id": ACCOUNT,
        "video_id": video["video_id"],
        "upload_id": init["upload_id"],
        "filename": "course-lesson-1.mp4",
        "title": "Lesson 1",
        "size_bytes": len(data),
        "sha256": source_sha,
        "source_key": f"sources/{video['video_id']}/original",
    }
    assert video["embed_token"] == harness.media.videos[(ACCOUNT, init["upload_id"])]["embed_token"]

    [event] = harness.events
    assert event.type == "video.uploaded"
    assert event.account_id == ACCOUNT
    assert event.data == {
        "video_id": video["video_id"],
        "upload_id": init["upload_id"],
        "filename": "course-lesson-1.mp4",
        "title": "Lesson 1",
        "size_bytes": len(data),
        "sha256": source_sha,
        "source_key": f"sources/{video['video_id']}/original",
    }

    # complete is idempotent: the same answer, no second registration or event.
    again = await harness.complete(init["upload_id"])
    assert again.status_code == 200
    assert again.json() == video
    assert len(harness.media.calls) == 1
    assert len(harness.events) == 1

    status = (await harness.status(init["upload_id"])).json()
    assert status["status"] == "completed"
    assert status["video_id"] == video["video_id"]
    assert status["missing"] == []

    # The parts are gone from storage once the object is assembled.
    root = Path(harness.objects.root)  # type: ignore[attr-defined]
    assert list((root / ".avc" / "multipart").iterdir()) == []

    metrics = (await harness.client.get("/metrics")).text
    assert metric_value(metrics, "avc_upload_bytes_total", kind="chunk") == len(data)
    assert metric_value(metrics, "avc_upload_chunks_total", outcome="ok") == len(order)
    assert (
        metric_value(metrics, "avc_upload_completes_total", kind="chunked", outcome="completed")
        == 1
    )
    assert (
        metric_value(metrics, "avc_upload_completes_total", kind="chunked", outcome="repeated") == 1
    )


async def test_resume_sends_only_the_missing_chunks(harness: Harness, video_bytes: bytes) -> None:
    data = video_bytes
    init = await harness.init(len(data))
    upload_id, total = init["upload_id"], init["total_chunks"]
    first = [0, 2, total - 1]
    await harness.send_chunks(upload_id, data, CHUNK, first)

    status = await harness.status(upload_id)
    assert status.status_code == 200
    body = status.json()
    assert set(body) == {
        "upload_id",
        "status",
        "filename",
        "size",
        "chunk_size",
        "total_chunks",
        "received",
        "missing",
        "expires_at",
        "video_id",
    }
    assert body["status"] == "open"
    assert body["received"] == sorted(first)
    assert body["missing"] == [i for i in range(total) if i not in first]
    assert body["video_id"] is None
    assert (body["filename"], body["size"], body["chunk_size"]) == (
        "course-lesson-1.mp4",
        len(data),
        CHUNK,
    )
    assert body["expires_at"] == init["expires_at"]

    incomplete = await harness.complete(upload_id)
    error = assert_error(incomplete, 409, "upload_incomplete")
    assert error["details"] == {"missing": body["missing"]}
    assert f"{len(body['missing'])} chunks are missing" in error["error"]

    await harness.send_chunks(upload_id, data, CHUNK, body["missing"])
    done = await harness.complete(upload_id)
    assert done.status_code == 200
    assert await harness.stored_bytes(done.json()["video_id"]) == data


async def test_copies_recorded_in_the_other_order_than_stored_still_complete(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two copies of one chunk at once: storage keeps the one stored last, the record says the
    one recorded last; both were answered 200, so complete takes the one storage kept."""
    data = random.Random(11).randbytes(2 * CHUNK + 10)
    upload_id = (await harness.init(len(data), filename="race.bin"))["upload_id"]
    await harness.send_chunks(upload_id, data, CHUNK, [0, 2])
    repo = harness.app.state.upload_service._repo
    record = repo.record_part
    first_stored = asyncio.Event()
    second_recorded = asyncio.Event()

    async def out_of_order(*args: object, **kwargs: object) -> object:
        if not first_stored.is_set():  # the copy stored first records last
            first_stored.set()
            await second_recorded.wait()
            return await record(*args, **kwargs)
        result = await record(*args, **kwargs)
        second_recorded.set()
        return result

    monkeypatch.setattr(repo, "record_part", out_of_order)

    async def copy() -> None:
        response = await harness.chunk(upload_id, 1, data[CHUNK : 2 * CHUNK])
        assert response.status_code == 200

    first = asyncio.create_task(copy())
    await first_stored.wait()  # stored; its record waits for the second copy's
    await copy()
    await first
    done = await harness.complete(upload_id)
    assert done.status_code == 200, done.text
    assert await harness.stored_bytes(done.json()["video_id"]) == data


async def test_parallel_duplicate_chunks_and_resends_replace(harness: Harness) -> None:
    rng = random.Random(7)
    data = rng.randbytes(3 * CHUNK + 12345)
    init = await harness.init(len(data), filename="dup.bin")
    upload_id = init["upload_id"]
    # Every chunk three times at once, 8 requests in flight.
    indices = [i for i in range(init["total_chunks"]) for _ in range(3)]
    rng.shuffle(indices)
    await harness.send_chunks(upload_id, data, CHUNK, indices, parallel=8, with_sha=True)
    status = (await harness.status(upload_id)).json()
    assert status["received"] == [0, 1, 2, 3]

    # Resending an index with other bytes replaces it...
    await harness.chunk(upload_id, 1, b"x" * CHUNK)
    # ...and sending the right bytes again replaces it back.
    await harness.send_chunks(upload_id, data, CHUNK, [1])
    done = await harness.complete(upload_id)
    assert done.status_code == 200
    assert await harness.stored_bytes(done.json()["video_id"]) == data


async def test_checksum_failure_is_not_received_and_keeps_the_earlier_copy(
    harness: Harness,
) -> None:
    data = random.Random(3).randbytes(2 * CHUNK)
    init = await harness.init(len(data), filename="sum.bin")
    upload_id = init["upload_id"]
    good0 = data[:CHUNK]

    wrong = await harness.chunk(upload_id, 0, good0, **{"X-Chunk-SHA256": "0" * 64})
    body = assert_error(wrong, 422, "checksum_mismatch")
    assert hashlib.sha256(good0).hexdigest() in body["error"]
    status = (await harness.status(upload_id)).json()
    assert status["received"] == []
    assert status["missing"] == [0, 1]

    ok = await harness.chunk(
        upload_id, 0, good0, **{"X-Chunk-SHA256": hashlib.sha256(good0).hexdigest().upper()}
    )
    assert ok.status_code == 200
    # A corrupted resend of a received chunk is refused and the stored copy stays.
    corrupted = await harness.chunk(
        upload_id, 0, b"\0" * CHUNK, **{"X-Chunk-SHA256": hashlib.sha256(good0).hexdigest()}
    )
    assert_error(corrupted, 422, "checksum_mismatch")
    await harness.send_chunks(upload_id, data, CHUNK, [1])
    done = await harness.complete(upload_id)
    assert done.status_code == 200
    assert await harness.stored_bytes(done.json()["video_id"]) == data

    metrics = (await harness.client.get("/metrics")).text
    assert metric_value(metrics, "avc_upload_chunks_total", outcome="checksum_mismatch") == 2


async def test_chunk_length_is_checked(harness: Harness) -> None:
    init = await harness.init(CHUNK + 10, filename="len.bin")
    upload_id = init["upload_id"]
    short = await harness.chunk(upload_id, 0, b"a" * (CHUNK - 1))
    body = assert_error(short, 400, "chunk_size_mismatch")
    assert body["details"]["expected_bytes"] == CHUNK
    last_too_long = await harness.chunk(upload_id, 1, b"a" * 11)
    assert_error(last_too_long, 400, "chunk_size_mismatch")

    # Without a Content-Length (chunked transfer encoding) the streamed count decides.
    async def body_stream(n: int):  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield b"b" * 4

    streamed = await harness.client.post(
        "/api/v1/upload/chunk",
        content=body_stream(4),
        headers=harness.headers(**{"X-Upload-ID": upload_id, "X-Chunk-Index": "1"}),
    )
    assert_error(streamed, 400, "chunk_size_mismatch")
    exact = await harness.client.post(
        "/api/v1/upload/chunk",
        content=_gen([b"c" * 6, b"d" * 4]),
        headers=harness.headers(**{"X-Upload-ID": upload_id, "X-Chunk-Index": "1"}),
    )
    assert exact.status_code == 200, exact.text
    status = (await harness.status(upload_id)).json()
    assert status["received"] == [1]


async def _gen(pieces: list[bytes]):  # type: ignore[no-untyped-def]
    for piece in pieces:
        yield piece


async def test_error_codes_of_the_contract(harness: Harness) -> None:
    data = b"z" * (CHUNK + 100)
    init = await harness.init(len(data), filename="errors.bin")
    upload_id = init["upload_id"]

    # upload_not_found: unknown, malformed, another account's (exactly alike).
    unknown = "upl_" + "0" * 25
    for response in (
        await harness.chunk(unknown, 0, b"x"),
        await harness.chunk("nope", 0, b"x"),
        await harness.chunk(upload_id, 0, data[:CHUNK], account=OTHER_ACCOUNT),
        await harness.status(unknown),
        await harness.status(upload_id, account=OTHER_ACCOUNT),
        await harness.complete(upload_id, account=OTHER_ACCOUNT),
        await harness.complete(unknown),
        await harness.client.delete(
            f"/api/v1/upload/{upload_id}", headers=harness.headers(OTHER_ACCOUNT)
        ),
    ):
        body = assert_error(response, 404, "upload_not_found")
        assert body["error"] == "No upload with this id."

    # chunk_out_of_range
    for index in (2, -1, 10_000):
        body = assert_error(await harness.chunk(upload_id, index, b"x"), 400, "chunk_out_of_range")
        assert body["details"] == {"total_chunks": 2}

    # chunk_size_mismatch (refused from Content-Length)
    assert_error(await harness.chunk(upload_id, 0, b"x" * 10), 400, "chunk_size_mismatch")

    # checksum_mismatch
    assert_error(
        await harness.chunk(upload_id, 0, data[:CHUNK], **{"X-Chunk-SHA256": "ab" * 32}),
        422,
        "checksum_mismatch",
    )

    # upload_incomplete
    body = assert_error(await harness.complete(upload_id), 409, "upload_incomplete")
    assert body["details"] == {"missing": [0, 1]}
    assert "2 chunks are missing" in body["error"]

    # bad headers
    no_id = await harness.client.post(
        "/api/v1/upload/chunk", content=b"x", headers=harness.headers(**{"X-Chunk-Index": "0"})
    )
    assert "X-Upload-ID" in assert_error(no_id, 400, "missing_header")["error"]
    no_index = await harness.client.post(
        "/api/v1/upload/chunk", content=b"x", headers=harness.headers(**{"X-Upload-ID": upload_id})
    )
    assert "X-Chunk-Index" in assert_error(no_index, 400, "missing_header")["error"]
    assert_error(await harness.chunk(upload_id, "one", b"x"), 400, "invalid_header")  # type: ignore[arg-type]
    assert_error(
        await harness.chunk(upload_id, 0, b"x", **{"X-Chunk-SHA256": "xyz"}), 400, "invalid_header"
    )

    # upload_completed: chunks after completion; abort after completion
    await harness.send_chunks(upload_id, data, CHUNK, [0, 1])
    assert (await harness.complete(upload_id)).status_code == 200
    assert_error(await harness.chunk(upload_id, 0, data[:CHUNK]), 409, "upload_completed")
    deleted = await harness.client.delete(f"/api/v1/upload/{upload_id}", headers=harness.headers())
    assert_error(deleted, 409, "upload_completed")


async def test_init_validation(harness: Harness) -> None:
    async def init(body: object, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return await harness.client.post(
            "/api/v1/upload/init", content=raw, headers=harness.headers(content_type=content_type)
        )

    ok = await init({"filename": "a.mp4", "size": 1}, "text/plain")
    assert ok.status_code == 201
    assert ok.json()["total_chunks"] == 1
    assert ok.json()["chunk_size"] == CHUNK

    for name in (
        "",
        "   ",
        "a/b.mp4",
        "..\\b.mp4",
        "a\x00b.mp4",
        "tab\t.mp4",
        "x" * 256,
        ".",
        42,
        None,
    ):
        assert_error(await init({"filename": name, "size": 10}), 400, "invalid_filename")
    assert (await init({"filename": "é" * 255, "size": 10})).status_code == 201
    assert_error(await init({"filename": "\ud800.mp4", "size": 10}), 400, "invalid_filename")

    for size in (0, -5, "10", 1.5, True, None):
        assert_error(await init({"filename": "a.mp4", "size": size}), 400, "invalid_size")
    too_big = await init({"filename": "a.mp4", "size": 50 * 1024**3 + 1})
    assert assert_error(too_big, 413, "file_too_large")["details"] == {"max_bytes": 50 * 1024**3}
    assert (await init({"filename": "a.mp4", "size": 50 * 1024**3})).status_code == 201

    for title in (5, "t" * 501, "bad\x07title"):
        assert_error(
            await init({"filename": "a.mp4", "size": 1, "title": title}), 400, "invalid_title"
        )

    assert_error(await init(b"{not json"), 400, "bad_request")
    assert_error(await init(b""), 400, "bad_request")
    assert_error(await init(b"[1, 2]"), 422, "validation_error")
    assert_error(await init(b"{" + b" " * 70_000 + b"}"), 413, "payload_too_large")

    bad_complete = await harness.client.post(
        "/api/v1/upload/complete", content=b"{}", headers=harness.headers()
    )
    assert_error(bad_complete, 422, "validation_error")


def test_chunk_size_rule() -> None:
    assert plan_chunks(1) == (CHUNK, 1)
    assert plan_chunks(CHUNK) == (CHUNK, 1)
    assert plan_chunks(CHUNK + 1) == (CHUNK, 2)
    assert plan_chunks(10_000 * CHUNK) == (CHUNK, 10_000)
    # One byte more needs 10,001 chunks of 5 MiB: the smallest whole MiB that fits is 6 MiB.
    assert plan_chunks(10_000 * CHUNK + 1) == (6 * MIB, -(-(10_000 * CHUNK + 1) // (6 * MIB)))
    size = 50 * 1024**3
    chunk, total = plan_chunks(size)
    assert chunk == 6 * MIB
    assert total <= 10_000
    assert (chunk - MIB) * 10_000 < size
    for size in (123_456_789_012, 5 * 1024**4):
        chunk, total = plan_chunks(size)
        assert chunk % MIB == 0
        assert total <= 10_000
        assert (chunk - MIB) * 10_000 < size


async def test_title_defaults_to_the_filename_stem(harness: Harness) -> None:
    data = b"tiny video"
    response = await harness.client.post(
        "/api/v1/upload/init",
        content=json.dumps({"filename": "my.talk.mp4", "size": len(data)}),
        headers=harness.headers(),
    )
    upload_id = response.json()["upload_id"]
    assert (await harness.chunk(upload_id, 0, data)).status_code == 200
    assert (await harness.complete(upload_id)).status_code == 200
    assert harness.media.calls[0]["title"] == "my.talk"


@pytest.mark.parametrize("limits", [upload_settings(max_open_uploads=2)])
async def test_open_upload_cap_per_account(harness: Harness) -> None:
    first = await harness.init(10)
    await harness.init(10)
    third = await harness.client.post(
        "/api/v1/upload/init",
        content=json.dumps({"filename": "a.mp4", "size": 10}),
        headers=harness.headers(),
    )
    assert assert_error(third, 429, "too_many_open_uploads")["details"] == {"max_open_uploads": 2}
    # Another account has its own cap; aborting one frees a slot.
    other = await harness.client.post(
        "/api/v1/upload/init",
        content=json.dumps({"filename": "a.mp4", "size": 10}),
        headers=harness.headers(OTHER_ACCOUNT),
    )
    assert other.status_code == 201
    aborted = await harness.client.delete(
        f"/api/v1/upload/{first['upload_id']}", headers=harness.headers()
    )
    assert aborted.status_code == 204
    assert (await harness.init(10))["upload_id"]


async def test_abort_removes_the_parts(harness: Harness) -> None:
    data = b"q" * (CHUNK + 5)
    init = await harness.init(len(data))
    upload_id = init["upload_id"]
    await harness.send_chunks(upload_id, data, CHUNK, [0])
    staging = Path(harness.objects.root) / ".avc" / "multipart"  # type: ignore[attr-defined]
    assert len(list(staging.iterdir())) == 1

    aborted = await harness.client.delete(f"/api/v1/upload/{upload_id}", headers=harness.headers())
    assert aborted.status_code == 204
    assert aborted.content == b""
    assert list(staging.iterdir()) == []
    # Gone for every call; DELETE again is still fine.
    assert_error(await harness.status(upload_id), 404, "upload_not_found")
    assert_error(await harness.chunk(upload_id, 1, b"q" * 5), 404, "upload_not_found")
    assert_error(await harness.complete(upload_id), 404, "upload_not_found")
    again = await harness.client.delete(f"/api/v1/upload/{upload_id}", headers=harness.headers())
    assert again.status_code == 204


async def test_chunk_racing_an_abort_is_refused(harness: Harness) -> None:
    data = b"r" * CHUNK * 2
    init = await harness.init(len(data))
    upload_id = init["upload_id"]
    gate = asyncio.Event()

    async def slow_body():  # type: ignore[no-untyped-def]
        yield data[: CHUNK // 2]
        await gate.wait()
        yield data[CHUNK // 2 : CHUNK]

    sending = asyncio.create_task(
        harness.client.post(
            "/api/v1/upload/chunk",
            content=slow_body(),
            headers=harness.headers(**{"X-Upload-ID": upload_id, "X-Chunk-Index": "0"}),
        )
    )
    await asyncio.sleep(0.1)
    assert (
        await harness.client.delete(f"/api/v1/upload/{upload_id}", headers=harness.headers())
    ).status_code == 204
    gate.set()
    assert_error(await sending, 404, "upload_not_found")


async def test_requests_without_the_internal_token_are_refused(harness: Harness) -> None:
    response = await harness.client.post("/api/v1/upload/init", content=b"{}")
    assert_error(response, 401, "unauthorized")
    response = await harness.client.post("/api/v1/upload/chunk", content=b"x")
    assert_error(response, 401, "unauthorized")


@pytest.mark.parametrize("path", ["/api/v1/upload/init", "/api/v1/upload/complete"])
async def test_get_on_post_routes_is_not_an_upload_id(harness: Harness, path: str) -> None:
    # GET /api/v1/upload/init is the status route with upload_id "init": unknown upload.
    response = await harness.client.get(path, headers=harness.headers(content_type=None))
    assert_error(response, 404, "upload_not_found")


async def test_client_gone_mid_chunk_is_a_quiet_400_and_the_chunk_stays_missing(
    harness: Harness,
) -> None:
    init = await harness.init(CHUNK * 2)
    upload_id = init["upload_id"]
    headers = harness.headers(**{"X-Upload-ID": upload_id, "X-Chunk-Index": "0"})
    headers["Content-Length"] = str(CHUNK)
    messages = [
        {"type": "http.request", "body": b"h" * (CHUNK // 2), "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/upload/chunk",
        "raw_path": b"/api/v1/upload/chunk",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("upload.test", 80),
    }
    await harness.app(scope, receive, send)
    assert sent[0]["status"] == 400
    body = json.loads(b"".join(m.get("body", b"") for m in sent[1:]))  # type: ignore[misc]
    assert body["code"] == "incomplete_body"
    assert (await harness.status(upload_id)).json()["missing"] == [0, 1]
    staging = Path(harness.objects.root) / ".avc" / "multipart"  # type: ignore[attr-defined]
    [upload_dir] = staging.iterdir()
    # No part record and no claim: nothing refers to the half-written bytes in `data`, and the
    # chunk's place is free for the retry.
    assert sorted(p.name for p in upload_dir.iterdir()) == ["data", "upload.json"]
