"""The typed records of the media service: documents in and out, and what a request changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from avc_common.errors import AppError
from avc_common.events import ErrorInfo, Event, VideoFailed
from avc_common.ids import new_id
from avc_media.errors import PresetNotFound
from avc_media.repository import (
    KEEP,
    Rendition,
    Video,
    VideoChanges,
    VideoError,
    VideoStatus,
    Visibility,
)
from avc_media.schemas import RegisterVideo, VideoUpdate

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _video(**changes: object) -> Video:
    values: dict[str, object] = {
        "id": new_id("vid"),
        "account_id": "acct_a",
        "upload_id": "upl_1",
        "title": "A clip",
        "filename": "clip.mp4",
        "status": VideoStatus.PROCESSING,
        "size_bytes": 10,
        "sha256": None,
        "source_key": "sources/x/original",
        "embed_token": "t" * 22,
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(changes)
    return Video(**values)  # type: ignore[arg-type]


def test_a_new_video_survives_the_round_trip() -> None:
    video = _video(allowed_domains=("example.com",), visibility=Visibility.PRIVATE)
    doc = video.to_new_doc()
    assert doc["_id"] == video.id
    assert doc["status"] == "processing"
    assert Video.from_doc(doc) == video


def test_a_stored_document_becomes_a_typed_video() -> None:
    video_id = new_id("vid")
    event = Event.of(
        VideoFailed(video_id=video_id, error=ErrorInfo(code="x", message="X.")),
        account_id="acct_a",
    )
    doc = {
        **_video(id=video_id).to_new_doc(),
        "status": "ready",
        "renditions": [{"name": "360p", "width": 640, "height": 360, "bitrate_kbps": 900}],
        "error": {"code": "encode_failed", "message": "No."},
        "encode_attempts": 2,
        "lease_expires_at": datetime(2026, 1, 1),  # naive: taken as UTC
        "outbox": {event.id: event.model_dump(mode="json")},
        "subtitles": [{"id": "sub_1", "language": "en", "kind": "subtitles"}],
    }
    del doc["visibility"]  # written before visibility existed
    video = Video.from_doc(doc)
    assert video.status is VideoStatus.READY
    assert video.ready
    assert not video.processing
    assert video.visibility is Visibility.PUBLIC
    assert video.renditions == (Rendition(name="360p", width=640, height=360, bitrate_kbps=900),)
    assert video.error == VideoError(code="encode_failed", message="No.")
    assert video.encode_attempts == 2
    assert video.lease_expires_at == datetime(2026, 1, 1, tzinfo=UTC)
    assert [e.id for e in video.outbox] == [event.id]
    assert video.subtitles[0].path == "subtitles/sub_1.vtt"
    assert video.subtitles[0].fields == {"language": "en", "kind": "subtitles"}
    assert not video.deleted


def test_an_update_request_becomes_a_change_of_only_what_was_sent() -> None:
    assert VideoUpdate.model_validate({}).changes() == VideoChanges()
    assert VideoChanges().to_set() == {}
    changes = VideoUpdate.model_validate(
        {"title": " T ", "allowed_domains": None, "visibility": "private", "preset_id": None}
    ).changes()
    assert changes == VideoChanges(
        title="T", allowed_domains=(), visibility=Visibility.PRIVATE, preset_id=None
    )
    assert changes.to_set() == {
        "title": "T",
        "allowed_domains": [],
        "visibility": "private",
        "preset_id": None,
    }
    only_domains = VideoUpdate.model_validate({"allowed_domains": ["A.example"]}).changes()
    assert only_domains.title is KEEP
    assert only_domains.preset_id is KEEP
    assert only_domains.to_set() == {"allowed_domains": ["a.example"]}


def test_request_models_raise_the_coded_errors() -> None:
    with pytest.raises(ValidationError):
        VideoUpdate.model_validate({"title": None})
    with pytest.raises(PresetNotFound) as raised:
        VideoUpdate.model_validate({"preset_id": "not-a-preset"})
    assert isinstance(raised.value, AppError)
    assert raised.value.status == 422
    video_id = new_id("vid")
    good = {
        "video_id": video_id,
        "upload_id": "upl_1",
        "filename": "a.mp4",
        "size_bytes": 1,
        "source_key": f"sources/{video_id}/original",
    }
    assert RegisterVideo.model_validate(good).source_key == good["source_key"]
    for bad in (
        {"video_id": "nope"},
        {"source_key": f"sources/{new_id('vid')}/original"},
        {"source_key": "../x"},
    ):
        with pytest.raises(ValidationError):
            RegisterVideo.model_validate({**good, **bad})
