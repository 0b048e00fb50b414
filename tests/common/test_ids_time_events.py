from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from avc_common.events import (
    EVENT_TYPES,
    PUBLIC_EVENT_TYPES,
    Event,
    VideoDeleted,
    VideoEncoded,
    VideoUploaded,
)
from avc_common.ids import is_id, new_id, new_token
from avc_common.timeutil import ensure_utc, parse_rfc3339, to_rfc3339, utcnow


def test_ids_are_prefixed_fixed_length_and_unique() -> None:
    ids = {new_id("vid") for _ in range(10_000)}
    assert len(ids) == 10_000
    for value in list(ids)[:50]:
        assert value.startswith("vid_")
        assert len(value) == 4 + 25
        assert is_id(value, "vid")
        assert not is_id(value, "upl")


def test_unknown_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id("xyz")


def test_tokens_are_url_safe_and_long() -> None:
    token = new_token()
    assert len(token) >= 32  # 192 bits in base64url
    assert all(c.isalnum() or c in "-_" for c in token)


def test_rfc3339_formats_utc_with_z() -> None:
    assert to_rfc3339(datetime(2026, 11, 26, 18, 0, tzinfo=UTC)) == "2026-11-26T18:00:00Z"
    plus_two = timezone(timedelta(hours=2))
    assert to_rfc3339(datetime(2026, 11, 26, 20, 0, tzinfo=plus_two)) == "2026-11-26T18:00:00Z"
    assert to_rfc3339(datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)) == (
        "2026-01-02T03:04:05.678Z"
    )


@given(st.datetimes(timezones=st.just(UTC)))
def test_rfc3339_round_trips_at_millisecond_precision(value: datetime) -> None:
    value = value.replace(microsecond=value.microsecond // 1000 * 1000)
    assert parse_rfc3339(to_rfc3339(value)) == value


@pytest.mark.parametrize("text", ["", "2026-11-26", "2026-11-26T18:00:00", "yesterday"])
def test_parse_rejects_non_rfc3339(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|Invalid|isoformat"):
        parse_rfc3339(text)


def test_utcnow_is_aware_and_millisecond_precise() -> None:
    now = utcnow()
    assert now.tzinfo is UTC
    assert now.microsecond % 1000 == 0
    assert ensure_utc(datetime(2026, 1, 1)).tzinfo is UTC


def test_event_envelope_round_trips_through_json() -> None:
    payload = VideoUploaded(
        video_id="vid_1", filename="a.mp4", size_bytes=10, source_key="sources/vid_1/original"
    )
    event = Event.of(payload, account_id="acct_1", request_id="req-1")
    back = Event.from_json(event.to_json())
    assert back == event
    assert back.payload() == payload
    assert back.is_public
    assert set(back.model_dump(mode="json")) == {
        "id",
        "type",
        "occurred_at",
        "account_id",
        "request_id",
        "data",
    }


def test_webhook_body_has_the_public_shape() -> None:
    event = Event.of(VideoDeleted(video_id="v", status="ready", bytes_freed=5), account_id="a")
    body = event.webhook_body()
    assert set(body) == {"id", "type", "created_at", "data"}
    assert body["created_at"].endswith("Z")
    assert not event.is_public


def test_every_public_event_has_a_typed_payload() -> None:
    assert set(PUBLIC_EVENT_TYPES) <= set(EVENT_TYPES)
    assert {"video.deleted", "video.viewed"} == set(EVENT_TYPES) - set(PUBLIC_EVENT_TYPES)


def test_bad_payload_is_refused() -> None:
    event = Event(type="video.encoded", account_id="a", data={"video_id": "v"})
    with pytest.raises(ValidationError):
        event.payload()
    with pytest.raises(ValidationError):
        VideoEncoded(
            video_id="v", duration_seconds=1, width=1, height=1, renditions=[], renditions_bytes=-1
        )
