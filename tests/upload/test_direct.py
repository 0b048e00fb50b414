"""Direct upload (`POST /api/v1/upload`, multipart form): streamed into storage, registered,
published; 413 past the limit, naming the chunked upload; form errors in the error shape."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest
from tests.support.assertions import assert_error
from tests.upload.conftest import (
    ACCOUNT,
    MIB,
    Harness,
    metric_value,
    upload_settings,
)

BOUNDARY = "avc-test-boundary-7f3a"


def form(*fields: tuple[str, bytes, str | None], close: bool = True) -> bytes:
    """Builds a multipart/form-data body by hand (field order and framing under control)."""
    out = b""
    for name, value, filename in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n".encode()
        if filename is not None:
            out += b"Content-Type: video/mp4\r\n"
        out += b"\r\n" + value + b"\r\n"
    if close:
        out += f"--{BOUNDARY}--\r\n".encode()
    return out


def form_headers(harness: Harness) -> dict[str, str]:
    return harness.headers(content_type=f"multipart/form-data; boundary={BOUNDARY}")


async def test_direct_upload_of_a_real_video(harness: Harness, small_video_bytes: bytes) -> None:
    data = small_video_bytes
    response = await harness.client.post(
        "/api/v1/upload",
        files={"file": ("talk.mp4", data, "video/mp4")},
        data={"title": "My talk"},
        headers=harness.headers(content_type=None),
    )
    assert response.status_code == 201, response.text
    video = response.json()
    assert set(video) == {"video_id", "embed_token", "status"}
    assert video["status"] == "processing"

    assert await harness.stored_bytes(video["video_id"]) == data
    sha = hashlib.sha256(data).hexdigest()
    [call] = harness.media.calls
    assert call["sha256"] == sha
    assert (call["filename"], call["title"], call["size_bytes"]) == (
        "talk.mp4",
        "My talk",
        len(data),
    )
    assert call["upload_id"].startswith("upl_")
    [event] = harness.events
    assert event.type == "video.uploaded"
    assert event.data["sha256"] == sha
    assert event.data["video_id"] == video["video_id"]
    assert event.account_id == ACCOUNT

    metrics = (await harness.client.get("/metrics")).text
    assert metric_value(metrics, "avc_upload_bytes_total", kind="direct") == len(data)
    assert (
        metric_value(metrics, "avc_upload_completes_total", kind="direct", outcome="completed") == 1
    )


async def test_title_may_come_after_the_file_and_other_fields_are_ignored(
    harness: Harness,
) -> None:
    data = b"\x00\x01video" * 1000
    body = form(
        ("note", b"ignored", None), ("file", data, "clip.mp4"), ("title", "Café".encode(), None)
    )
    response = await harness.client.post(
        "/api/v1/upload", content=body, headers=form_headers(harness)
    )
    assert response.status_code == 201, response.text
    assert harness.media.calls[0]["title"] == "Café"
    assert await harness.stored_bytes(response.json()["video_id"]) == data

    untitled = await harness.client.post(
        "/api/v1/upload",
        content=form(("file", b"abc", "holiday.mov")),
        headers=form_headers(harness),
    )
    assert untitled.status_code == 201
    assert harness.media.calls[1]["title"] == "holiday"


@pytest.mark.parametrize("limits", [upload_settings(direct_max_bytes=MIB)])
async def test_413_past_the_direct_limit_names_the_chunked_upload(harness: Harness) -> None:
    big = b"v" * (2 * MIB)
    # Refused from Content-Length, before the body is read.
    early = await harness.client.post(
        "/api/v1/upload",
        files={"file": ("big.mp4", big, "video/mp4")},
        headers=harness.headers(content_type=None),
    )
    body = assert_error(early, 413, "payload_too_large")
    assert "/api/v1/upload/init" in body["error"]
    assert body["details"]["max_bytes"] == MIB

    # Without a Content-Length the streamed count decides; nothing is left in storage.
    async def stream() -> AsyncIterator[bytes]:
        payload = form(("file", big, "big.mp4"))
        for start in range(0, len(payload), 64 * 1024):
            yield payload[start : start + 64 * 1024]

    streamed = await harness.client.post(
        "/api/v1/upload", content=stream(), headers=form_headers(harness)
    )
    assert "chunked upload" in assert_error(streamed, 413, "payload_too_large")["error"]
    assert await harness.objects.list("sources") == []
    assert harness.media.calls == []
    # Exactly the limit is fine.
    exact = await harness.client.post(
        "/api/v1/upload", content=form(("file", big[:MIB], "ok.mp4")), headers=form_headers(harness)
    )
    assert exact.status_code == 201


async def test_form_errors(harness: Harness) -> None:
    post = harness.client.post
    not_form = await post("/api/v1/upload", content=b"raw", headers=harness.headers())
    assert_error(not_form, 415, "unsupported_media_type")
    no_boundary = await post(
        "/api/v1/upload",
        content=b"raw",
        headers=harness.headers(content_type="multipart/form-data"),
    )
    assert_error(no_boundary, 415, "unsupported_media_type")

    no_file = await post(
        "/api/v1/upload", content=form(("title", b"t", None)), headers=form_headers(harness)
    )
    assert "no `file`" in assert_error(no_file, 400, "invalid_form")["error"]
    no_name = await post(
        "/api/v1/upload", content=form(("file", b"abc", None)), headers=form_headers(harness)
    )
    assert_error(no_name, 400, "invalid_filename")
    slash = await post(
        "/api/v1/upload", content=form(("file", b"abc", "a/b.mp4")), headers=form_headers(harness)
    )
    assert_error(slash, 400, "invalid_filename")
    empty = await post(
        "/api/v1/upload", content=form(("file", b"", "e.mp4")), headers=form_headers(harness)
    )
    assert_error(empty, 400, "invalid_size")
    cut = await post(
        "/api/v1/upload",
        content=form(("file", b"abc" * 100, "c.mp4"), close=False),
        headers=form_headers(harness),
    )
    assert_error(cut, 400, "invalid_form")
    two = await post(
        "/api/v1/upload",
        content=form(("file", b"a", "a.mp4"), ("file", b"b", "b.mp4")),
        headers=form_headers(harness),
    )
    assert_error(two, 400, "invalid_form")
    bad_title = await post(
        "/api/v1/upload",
        content=form(("file", b"a", "a.mp4"), ("title", b"\xff\xfe", None)),
        headers=form_headers(harness),
    )
    assert_error(bad_title, 400, "invalid_title")

    # Nothing of the refused uploads stays in storage, nothing was registered.
    assert await harness.objects.list("sources") == []
    assert harness.media.calls == []
    assert harness.events == []
