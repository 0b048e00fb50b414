"""Webhook endpoints CRUD, exactly as API.md says, plus validation, plan and tenancy."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from tests.support.assertions import assert_error

from avc_common.events import PUBLIC_EVENT_TYPES
from avc_common.ids import new_id

from .conftest import WebhooksHarness, auth

URL = "https://public.test/hooks/avc"


async def test_create_returns_the_secret_once(harness: WebhooksHarness) -> None:
    created = await harness.create(URL, description="prod")
    assert set(created) >= {"id", "url", "events", "enabled", "secret", "created_at"}
    assert re.fullmatch(r"whk_[0-9a-z]{25}", created["id"])
    assert created["url"] == URL
    assert created["events"] == list(PUBLIC_EVENT_TYPES)
    assert created["enabled"] is True
    assert created["description"] == "prod"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", created["created_at"])
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"))) <= 32

    one = await harness.client.get(
        f"/api/v1/webhooks/{created['id']}", headers=auth(harness.account_id)
    )
    assert one.status_code == 200
    assert "secret" not in one.json()
    assert one.json()["id"] == created["id"]
    listed = await harness.client.get("/api/v1/webhooks", headers=auth(harness.account_id))
    assert "secret" not in listed.json()["data"][0]
    assert secret not in listed.text


async def test_json_body_whatever_the_content_type(harness: WebhooksHarness) -> None:
    response = await harness.client.post(
        "/api/v1/webhooks",
        headers={**auth(harness.account_id), "Content-Type": "application/x-www-form-urlencoded"},
        content=f'{{"url": "{URL}", "events": ["video.encoded", "video.encoded"]}}'.encode(),
    )
    assert response.status_code == 201, response.text
    assert response.json()["events"] == ["video.encoded"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": URL, "events": ["video.deleted"]},  # internal only
        {"url": URL, "events": ["video.nope"]},
        {"url": URL, "events": []},
        {"url": URL, "events": "video.encoded"},
        {"url": URL, "description": "x" * 501},
        {"events": ["video.encoded"]},
        {"url": 42},
    ],
)
async def test_invalid_bodies_are_422(harness: WebhooksHarness, body: dict[str, Any]) -> None:
    response = await harness.client.post(
        "/api/v1/webhooks", headers=auth(harness.account_id), json=body
    )
    assert_error(response, 422, "validation_error")


async def test_list_is_paginated_newest_first(harness: WebhooksHarness) -> None:
    ids = [(await harness.create(f"{URL}/{i}"))["id"] for i in range(5)]
    response = await harness.client.get(
        "/api/v1/webhooks?page=2&per_page=2", headers=auth(harness.account_id)
    )
    page = response.json()
    assert page["page"] == 2
    assert page["per_page"] == 2
    assert page["total"] == 5
    assert page["total_pages"] == 3
    assert [e["id"] for e in page["data"]] == list(reversed(ids))[2:4]
    bad = await harness.client.get(
        "/api/v1/webhooks?per_page=101", headers=auth(harness.account_id)
    )
    assert_error(bad, 422, "validation_error")
    bad = await harness.client.get("/api/v1/webhooks?page=0", headers=auth(harness.account_id))
    assert_error(bad, 422, "validation_error")


async def test_update_and_delete(harness: WebhooksHarness) -> None:
    created = await harness.create(URL)
    path = f"/api/v1/webhooks/{created['id']}"
    headers = auth(harness.account_id)
    response = await harness.client.put(
        path,
        headers=headers,
        json={"events": ["view.threshold"], "enabled": False, "description": "d"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["events"] == ["view.threshold"]
    assert body["enabled"] is False
    assert body["description"] == "d"
    assert body["url"] == URL

    response = await harness.client.put(
        path, headers=headers, json={"url": URL + "/v2", "description": None}
    )
    assert response.json()["url"] == URL + "/v2"
    assert response.json()["description"] is None
    assert response.json()["enabled"] is False

    assert_error(
        await harness.client.put(path, headers=headers, json={"enabled": "yes"}),
        422,
        "validation_error",
    )
    assert_error(
        await harness.client.put(path, headers=headers, json={"url": None}), 422, "validation_error"
    )
    assert_error(
        await harness.client.put(path, headers=headers, json={"url": "http://public.test/"}),
        422,
        "invalid_webhook_url",
    )

    deleted = await harness.client.delete(path, headers=headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_error(await harness.client.get(path, headers=headers), 404, "not_found")
    assert_error(await harness.client.delete(path, headers=headers), 404, "not_found")


async def test_another_accounts_webhook_is_404(harness: WebhooksHarness) -> None:
    created = await harness.create(URL)
    other = auth(new_id("acct"))
    path = f"/api/v1/webhooks/{created['id']}"
    missing = f"/api/v1/webhooks/{new_id('whk')}"
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", path, {}),
        ("PUT", path, {"json": {"enabled": False}}),
        ("DELETE", path, {}),
        ("GET", path + "/deliveries", {}),
        ("GET", missing, {}),
    ]
    for method, target, kwargs in cases:
        response = await harness.client.request(
            method, target, headers=other, json=kwargs.get("json")
        )
        body = assert_error(response, 404, "not_found")
        assert body["error"] == "Webhook not found."
    listed = await harness.client.get("/api/v1/webhooks", headers=other)
    assert listed.json()["total"] == 0
    retry = await harness.client.post(
        f"/api/v1/webhooks/deliveries/{new_id('dlv')}/retry", headers=other
    )
    assert_error(retry, 404, "not_found")


@pytest.mark.parametrize("plan", ["premium", "starter"])
async def test_other_plans_get_plan_required(harness: WebhooksHarness, plan: str) -> None:
    headers = auth(harness.account_id, plan=plan)
    assert_error(
        await harness.client.get("/api/v1/webhooks", headers=headers), 403, "plan_required"
    )
    response = await harness.client.post("/api/v1/webhooks", headers=headers, json={"url": URL})
    assert_error(response, 403, "plan_required")


async def test_without_the_gateway_token_401(harness: WebhooksHarness) -> None:
    assert_error(await harness.client.get("/api/v1/webhooks"), 401, "unauthorized")


async def test_endpoint_limit(harness: WebhooksHarness) -> None:
    harness.app.state.webhook_service._settings = harness.webhook_settings.model_copy(
        update={"max_endpoints_per_account": 2}
    )
    await harness.create(URL)
    await harness.create(URL)
    response = await harness.client.post(
        "/api/v1/webhooks", headers=auth(harness.account_id), json={"url": URL}
    )
    assert_error(response, 409, "webhook_limit_reached")
