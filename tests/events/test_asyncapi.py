"""The committed AsyncAPI document: generated from the code, valid AsyncAPI 3, and the schemas
it holds accept what the platform publishes (bus envelopes and webhook bodies) and refuse what
it must not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT7

from avc_common.asyncapi import build_document, envelope_schema_name, message_key, render_yaml
from avc_common.events import (
    EVENT_TYPES,
    PUBLIC_EVENT_TYPES,
    ErrorInfo,
    Event,
    EventData,
    RenditionInfo,
    SubtitleTranslated,
    VideoDeleted,
    VideoEncoded,
    VideoFailed,
    VideoUploaded,
    VideoViewed,
    ViewThreshold,
)

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.yaml"
SPEC_SCHEMA = Path(__file__).with_name("asyncapi_specs") / "asyncapi-3.0.0.schema.json"
DOC_URI = "urn:avcaption:asyncapi"

SAMPLES: dict[str, EventData] = {
    "video.uploaded": VideoUploaded(
        video_id="vid_1",
        upload_id=None,
        filename="lesson-1.mp4",
        title="Lesson 1",
        size_bytes=1234,
        sha256="ab" * 32,
        source_key="sources/vid_1/original",
    ),
    "video.encoded": VideoEncoded(
        video_id="vid_1",
        duration_seconds=4.0,
        width=640,
        height=360,
        renditions=[RenditionInfo(name="360p", width=640, height=360, bitrate_kbps=800)],
        renditions_bytes=4096,
    ),
    "video.failed": VideoFailed(
        video_id="vid_1", error=ErrorInfo(code="invalid_media", message="Not a video.")
    ),
    "view.threshold": ViewThreshold(video_id="vid_1", threshold=100, views=100),
    "subtitle.translated": SubtitleTranslated(
        video_id="vid_1", subtitle_id="sub_2", source_subtitle_id="sub_1", language="fr"
    ),
    "video.deleted": VideoDeleted(video_id="vid_1", status="ready", bytes_freed=10),
    "video.viewed": VideoViewed(video_id="vid_1"),
}


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMMITTED.read_text(encoding="utf-8"))
    return document


def validator(document: dict[str, Any], schema_name: str) -> jsonschema.Draft7Validator:
    """Returns a validator of `components.schemas.<schema_name>`, references resolved in the
    document itself."""
    registry: Registry[Any] = Registry().with_resource(DOC_URI, DRAFT7.create_resource(document))
    return jsonschema.Draft7Validator(
        {"$ref": f"{DOC_URI}#/components/schemas/{schema_name}"}, registry=registry
    )


def test_the_committed_document_is_what_the_code_generates() -> None:
    generated = render_yaml()
    committed_text = COMMITTED.read_text(encoding="utf-8")
    assert committed_text == generated, (
        "docs/asyncapi.yaml differs from the event models: run `make asyncapi` and commit it "
        "(and follow the versioning policy in docs/events.md)"
    )


def test_the_document_is_valid_asyncapi_3(committed: dict[str, Any]) -> None:
    spec = json.loads(SPEC_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(spec)
    errors = [
        f"{e.json_path}: {e.message[:200]}"
        for e in jsonschema.Draft7Validator(spec).iter_errors(committed)
    ]
    assert errors == []


def test_the_spec_validator_refuses_a_broken_document(committed: dict[str, Any]) -> None:
    """The check above can fail: the same validator refuses documents broken in small ways."""
    spec = json.loads(SPEC_SCHEMA.read_text(encoding="utf-8"))
    checker = jsonschema.Draft7Validator(spec)
    breakages = [
        ("operations", "publishVideoUploaded", "action", "publish"),
        ("channels", "videoUploaded", "bindings", "amqp", "is", "nonsense"),
        ("components", "schemas", "VideoUploaded", "type", "objekt"),
    ]
    for path in breakages:
        broken = json.loads(json.dumps(committed))
        node = broken
        for key in path[:-2]:
            node = node[key]
        node[path[-2]] = path[-1]
        assert not checker.is_valid(broken), path


def test_every_local_reference_resolves(committed: dict[str, Any]) -> None:
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                refs.append(ref)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(committed)
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = committed
        for part in ref[2:].split("/"):
            assert isinstance(node, dict), f"{ref} does not resolve"
            assert part in node, f"{ref} does not resolve"
            node = node[part]


def test_one_channel_and_message_per_event_type_tagged_public_or_internal(
    committed: dict[str, Any],
) -> None:
    assert set(SAMPLES) == set(EVENT_TYPES)
    for event_type in EVENT_TYPES:
        key = message_key(event_type)
        assert committed["channels"][key]["address"] == event_type
        message = committed["components"]["messages"][key]
        assert message["name"] == event_type
        tag = "public" if event_type in PUBLIC_EVENT_TYPES else "internal"
        assert message["tags"] == [{"name": tag}]
        assert committed["channels"][key]["bindings"]["amqp"]["exchange"]["type"] == "topic"


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_bus_envelopes_match_their_schema(committed: dict[str, Any], event_type: str) -> None:
    payload = SAMPLES[event_type]
    event = Event.of(payload, account_id="acct_1", request_id="req_1")
    body = json.loads(event.to_json())
    check = validator(committed, envelope_schema_name(type(payload)))
    assert list(check.iter_errors(body)) == []
    assert list(validator(committed, "Event").iter_errors(body)) == []

    # A later release may add payload fields: still valid (additive changes only).
    assert check.is_valid({**body, "data": {**body["data"], "added_later": 1}})
    # Another type's envelope, a missing field or a wrongly typed one is refused.
    assert not check.is_valid({**body, "type": "something.else"})
    some_field = next(iter(type(payload).model_fields))
    assert not check.is_valid(
        {**body, "data": {k: v for k, v in body["data"].items() if k != some_field}}
    )
    assert not check.is_valid({**body, "data": {**body["data"], "video_id": 7}})
    assert not check.is_valid({k: v for k, v in body.items() if k != "id"})


@pytest.mark.parametrize("event_type", PUBLIC_EVENT_TYPES)
def test_webhook_bodies_share_the_payload_schemas(
    committed: dict[str, Any], event_type: str
) -> None:
    payload = SAMPLES[event_type]
    event = Event.of(payload, account_id="acct_1")
    body = event.webhook_body()
    assert set(body) == {"id", "type", "created_at", "data"}
    assert list(validator(committed, "WebhookBody").iter_errors(body)) == []
    assert list(validator(committed, type(payload).__name__).iter_errors(body["data"])) == []
    assert body["data"] == json.loads(event.to_json())["data"]


def test_a_webhook_body_is_built_through_the_payload_model() -> None:
    """One definition: a bus event whose data its model refuses makes no webhook body."""
    bad = Event(type="video.encoded", account_id="a", data={"video_id": "v"})
    with pytest.raises(ValueError, match="validation error"):
        bad.webhook_body()


def test_the_generator_reflects_a_new_payload_field() -> None:
    """What the drift test relies on: the document follows the models."""
    document = build_document()
    uploaded = document["components"]["schemas"]["VideoUploaded"]
    assert set(uploaded["properties"]) == set(VideoUploaded.model_fields)
    assert uploaded["required"] == list(VideoUploaded.model_fields)
