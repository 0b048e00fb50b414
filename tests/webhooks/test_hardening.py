"""Webhook endpoint bodies: a recursion bomb is 400 `bad_request` (never a 500), JSON that is
not an object 422; ports other than 443 and 1024-65535 are refused; PUT refuses unknown fields
like video PUT does."""

from __future__ import annotations

from typing import Any

import pytest
from tests.support.assertions import assert_error

from avc_webhooks.ssrf import UrlPolicy, UrlRefused

from .conftest import WebhooksHarness, auth
from .test_endpoints import URL

NESTED = b"[" * 5000 + b"]" * 5000
NESTED_IN_OBJECT = b'{"url": "' + URL.encode() + b'", "events": ' + b"[" * 5000 + b"]" * 5000 + b"}"
TOO_DEEP = b'{"url": "' + URL.encode() + b'", "x": ' + b"[" * 40 + b"]" * 40 + b"}"


async def test_nested_json_on_create_and_put(harness: WebhooksHarness) -> None:
    created = await harness.create(URL)
    headers = auth(harness.account_id)
    put_url = f"/api/v1/webhooks/{created['id']}"
    for body in (NESTED, NESTED_IN_OBJECT, TOO_DEEP):
        post = await harness.client.post("/api/v1/webhooks", headers=headers, content=body)
        assert_error(post, 400, "bad_request")
        assert_error(
            await harness.client.put(put_url, headers=headers, content=body), 400, "bad_request"
        )
    for body in (b"[]", b"1"):
        post = await harness.client.post("/api/v1/webhooks", headers=headers, content=body)
        assert_error(post, 422, "validation_error")
        assert_error(
            await harness.client.put(put_url, headers=headers, content=body),
            422,
            "validation_error",
        )


@pytest.mark.parametrize("port", [0, 1, 22, 25, 80, 444, 1023, 65536, 99999])
async def test_ports_outside_443_and_1024_65535_are_refused(
    harness: WebhooksHarness, port: int
) -> None:
    url = f"https://public.test:{port}/hooks"
    headers = auth(harness.account_id)
    created = await harness.client.post("/api/v1/webhooks", headers=headers, json={"url": url})
    body = assert_error(created, 422, "invalid_webhook_url")
    assert body["details"] == {"reason": "port"}
    existing = await harness.create(URL)
    updated = await harness.client.put(
        f"/api/v1/webhooks/{existing['id']}", headers=headers, json={"url": url}
    )
    assert_error(updated, 422, "invalid_webhook_url")


@pytest.mark.parametrize("port", [443, 1024, 8443, 65535])
async def test_ports_443_and_1024_65535_are_accepted(harness: WebhooksHarness, port: int) -> None:
    created = await harness.create(f"https://public.test:{port}/hooks")
    assert created["url"].startswith("https://public.test")


def test_insecure_mode_allows_low_ports_but_never_invalid_ones() -> None:
    policy = UrlPolicy(allow_insecure=True)
    assert policy.parse("http://localhost:80/x").port is None  # the scheme's default
    assert policy.parse("http://localhost:25/x").port == 25
    for port in (0, 65536):
        with pytest.raises(UrlRefused):
            policy.parse(f"http://localhost:{port}/x")


@pytest.mark.parametrize(
    "body",
    [{"unknown_field": 1}, {"enabled": False, "urll": URL}, {"secret": "whsec_mine"}],
)
async def test_put_refuses_unknown_fields(harness: WebhooksHarness, body: dict[str, Any]) -> None:
    created = await harness.create(URL)
    response = await harness.client.put(
        f"/api/v1/webhooks/{created['id']}", headers=auth(harness.account_id), json=body
    )
    error = assert_error(response, 422, "validation_error")
    assert any(e["type"] == "extra_forbidden" for e in error["details"]["errors"])
    unchanged = await harness.client.get(
        f"/api/v1/webhooks/{created['id']}", headers=auth(harness.account_id)
    )
    assert unchanged.json()["enabled"] is True
