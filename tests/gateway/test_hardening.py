"""Issue 10's gateway items: deeply nested JSON on login, a per-IP login cap beside the
per-IP+email one, and a cap on API keys per account."""

from __future__ import annotations

import uuid

import pytest
from fastapi import Request
from tests.support.assertions import assert_error

from avc_common.errors import AppError

from .conftest import PASSWORD, StartGateway, fast_settings

LOGIN = "/api/v1/auth/login"
NESTED = b"[" * 5000 + b"]" * 5000
NESTED_OBJECT = b'{"email": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"


async def test_deeply_nested_json_on_login_is_a_400(start_gateway: StartGateway) -> None:
    gw = await start_gateway()
    for body in (NESTED, NESTED_OBJECT):
        response = await gw.client.post(
            LOGIN, content=body, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "bad_request")


async def test_many_emails_from_one_ip_hit_the_per_ip_login_cap(
    start_gateway: StartGateway,
) -> None:
    gw = await start_gateway(
        gw=fast_settings(login_rate_limit_per_minute=10, login_ip_rate_limit_per_minute=30)
    )
    statuses = []
    for i in range(300):
        body = {"email": f"guess{i}-{uuid.uuid4().hex[:6]}@example.com", "password": "x" * 12}
        response = await gw.client.post(LOGIN, json=body)
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert_error(response, 429, "rate_limited")
            assert response.headers["x-ratelimit-limit"] == "30"
    assert statuses[:30] == [401] * 30
    assert set(statuses[30:]) == {429}


async def test_the_per_ip_login_cap_counts_per_ip(start_gateway: StartGateway) -> None:
    settings = fast_settings(login_rate_limit_per_minute=10, login_ip_rate_limit_per_minute=2)
    one = await start_gateway(gw=settings, client_ip="203.0.113.1")
    account = await one.account()
    body = {"email": account.email, "password": PASSWORD}
    assert [(await one.client.post(LOGIN, json=body)).status_code for _ in range(3)] == [
        200,
        200,
        429,
    ]


async def test_api_keys_per_account_are_capped(start_gateway: StartGateway) -> None:
    gw = await start_gateway(gw=fast_settings(max_api_keys_per_account=3))
    account = await gw.account()
    session = gw.bearer(account)
    created = [
        await gw.client.post("/api/v1/api-keys", json={"name": f"k{i}"}, headers=session)
        for i in range(3)
    ]
    assert [r.status_code for r in created] == [201, 201, 201]
    refused = await gw.client.post("/api/v1/api-keys", json={"name": "k4"}, headers=session)
    assert_error(refused, 409, "api_key_limit_reached")
    # Revoking one makes room again.
    first = created[0].json()["id"]
    revoked = await gw.client.delete(f"/api/v1/api-keys/{first}", headers=session)
    assert revoked.status_code == 204
    again = await gw.client.post("/api/v1/api-keys", json={"name": "k5"}, headers=session)
    assert again.status_code == 201


async def test_the_operator_command_path_is_capped_too(start_gateway: StartGateway) -> None:
    gw = await start_gateway(gw=fast_settings(max_api_keys_per_account=1))
    account = await gw.account()
    await gw.api_key(account)
    with pytest.raises(AppError) as refused:
        await gw.api_key(account)
    assert (refused.value.status, refused.value.code) == (409, "api_key_limit_reached")


async def test_forwarded_proto_is_believed_only_with_trust(start_gateway: StartGateway) -> None:
    async def scheme(request: Request) -> dict[str, str]:
        return {"scheme": request.url.scheme}

    seen = {}
    for trust in (False, True):
        gw = await start_gateway(gw=fast_settings(trust_forwarded_for=trust))
        gw.app.add_api_route("/scheme-probe", scheme)
        response = await gw.client.get("/scheme-probe", headers={"X-Forwarded-Proto": "ftp, https"})
        seen[trust] = response.json()["scheme"]
    assert seen == {False: "http", True: "https"}
