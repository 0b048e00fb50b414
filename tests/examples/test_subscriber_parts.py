"""The example subscriber's envelope check and dedupe store, without a broker (the whole
subscriber against the real platform is test_subscriber.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from examples.subscriber.event_subscriber import (
    EnvelopeChecker,
    InvalidEvent,
    SeenIds,
    UnknownEventType,
)

from avc_common.asyncapi import CONTRACT_VERSION
from avc_common.events import EVENT_TYPES, ErrorInfo, Event, VideoFailed


@pytest.fixture(scope="module")
def checker() -> EnvelopeChecker:
    return EnvelopeChecker.from_file()


def failed_event() -> Event:
    payload = VideoFailed(video_id="vid_1", error=ErrorInfo(code="invalid_media", message="No."))
    return Event.of(payload, account_id="acct_1", request_id="req_1")


def test_it_knows_every_event_type_of_the_contract(checker: EnvelopeChecker) -> None:
    assert checker.known_types == set(EVENT_TYPES)
    assert checker.version == CONTRACT_VERSION


def test_a_platform_event_passes_and_comes_back_typed(checker: EnvelopeChecker) -> None:
    event = failed_event()
    received = checker.check(event.to_json())
    assert (received.id, received.type, received.account_id) == (event.id, event.type, "acct_1")
    assert received.data == event.data


@pytest.mark.parametrize(
    "change",
    [
        {"data": {"video_id": "vid_1"}},  # `error` missing
        {"data": {"video_id": "vid_1", "error": {"code": 5, "message": "x"}}},
        {"id": None},
        {"occurred_at": 12},
    ],
)
def test_a_body_breaking_the_schema_of_its_type_is_invalid(
    checker: EnvelopeChecker, change: dict[str, object]
) -> None:
    body = {**json.loads(failed_event().to_json()), **change}
    with pytest.raises(InvalidEvent):
        checker.check(json.dumps(body).encode())


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", b'{"type": "video.failed"}'])
def test_what_is_not_an_envelope_is_invalid(checker: EnvelopeChecker, raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        checker.check(raw)


def test_a_valid_envelope_of_an_unknown_type_is_told_apart(checker: EnvelopeChecker) -> None:
    body = {**json.loads(failed_event().to_json()), "type": "video.archived", "data": {"x": 1}}
    with pytest.raises(UnknownEventType, match=r"video\.archived"):
        checker.check(json.dumps(body).encode())


def test_handled_ids_survive_a_restart(checker: EnvelopeChecker, tmp_path: Path) -> None:
    event = checker.check(failed_event().to_json())
    seen = SeenIds(tmp_path / "seen.sqlite3")
    assert event.id not in seen
    seen.add(event)
    seen.add(event)  # a second add of the same id is harmless
    seen.close()
    reopened = SeenIds(tmp_path / "seen.sqlite3")
    assert event.id in reopened
    assert "evt_other" not in reopened
    reopened.close()
