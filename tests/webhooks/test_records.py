"""The webhooks records: documents map to typed values and back; a change names only what it
changes."""

from __future__ import annotations

from datetime import UTC, datetime

from avc_webhooks.repository import (
    KEEP,
    Attempt,
    AttemptOutcome,
    Delivery,
    DeliveryStatus,
    EndpointChanges,
)
from avc_webhooks.schemas import EndpointUpdate

NOW = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)


def test_a_delivery_with_its_attempts_survives_its_document() -> None:
    attempt = Attempt(1, NOW, 12, "http_error", 500, "HTTP 500", "down", 3.0)
    delivery = Delivery(
        id="dlv_1",
        account_id="acct",
        endpoint_id="whk_1",
        event_id="evt_1",
        event_type="video.ready",
        body="{}",
        status=DeliveryStatus.PENDING,
        created_at=NOW,
        updated_at=NOW,
        next_attempt_at=NOW,
        attempts=1,
        attempt_log=[attempt],
    )
    doc = delivery.to_doc()
    assert doc["status"] == "pending"
    assert isinstance(doc["attempt_log"][0]["started_at"], str)  # as the API shows it
    assert Delivery.from_doc(doc) == delivery


def test_an_outcome_without_an_attempt_keeps_the_last_status_code() -> None:
    given_up = AttemptOutcome(DeliveryStatus.FAILED, updated_at=NOW, last_error="deleted")
    assert "last_status_code" not in given_up.to_fields()
    assert "auto_failures" not in given_up.to_fields()
    timed_out = AttemptOutcome(
        DeliveryStatus.PENDING, updated_at=NOW, last_status_code=None, auto_failures=2
    )
    assert timed_out.to_fields()["last_status_code"] is None
    assert timed_out.to_fields()["auto_failures"] == 2


def test_an_update_body_becomes_a_change_of_only_the_fields_sent() -> None:
    changes = EndpointUpdate.model_validate({"description": None}).changes(NOW)
    assert changes == EndpointChanges(updated_at=NOW, description=None)
    assert changes.to_fields() == {"updated_at": NOW, "description": None}
    enabled = EndpointUpdate.model_validate({"enabled": True}).changes(NOW)
    assert enabled.url is KEEP
    assert enabled.to_fields() == {
        "updated_at": NOW,
        "enabled": True,
        "disabled_reason": None,
        "failing_since": None,
    }
    assert "disabled_reason" not in EndpointChanges(updated_at=NOW, enabled=False).to_fields()
