"""Authentication and plan gating: one test per failure mode, each in the exact error shape."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
import pytest
from tests.gateway.conftest import JWT_SECRET, Gateway, LogLines
from tests.support.assertions import assert_error

from avc_gateway.accounts.repository import Account

ACCOUNT = "/api/v1/account"


def make_token(
    account: Account | None,
    *,
    secret: str = JWT_SECRET,
    algorithm: str = "HS256",
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": "avcaption",
        "aud": "avcaption-api",
        "sub": account.id if account else "acct_" + "0" * 25,
        "iat": now,
        "exp": now + 600,
    }
    values.update(claims)
    for name in drop:
        values.pop(name)
    return jwt.encode(values, secret, algorithm=algorithm)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- missing and malformed credentials


async def test_no_credentials_is_401_unauthorized(gateway: Gateway) -> None:
    response = await gateway.client.get(ACCOUNT, headers={"X-Request-ID": "auth-missing"})
    body = assert_error(response, 401, "unauthorized")
    assert body["request_id"] == "auth-missing"
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "avc_123",
        "avc_" + "A" * 64,  # uppercase hex
        "avk_" + "a" * 64,
        "avc_" + "a" * 65,
        "avc_" + "g" * 64,
    ],
)
async def test_malformed_api_key_is_401_invalid_api_key(gateway: Gateway, key: str) -> None:
    by_header = await gateway.client.get(ACCOUNT, headers={"X-API-Key": key})
    by_query = await gateway.client.get(ACCOUNT, params={"api_key": key})
    assert "malformed" in assert_error(by_header, 401, "invalid_api_key")["error"]
    assert "malformed" in assert_error(by_query, 401, "invalid_api_key")["error"]


async def test_unknown_api_key_is_401_invalid_api_key(gateway: Gateway) -> None:
    response = await gateway.client.get(ACCOUNT, headers={"X-API-Key": f"avc_{'0' * 64}"})
    assert_error(response, 401, "invalid_api_key")


async def test_revoked_api_key_is_401_invalid_api_key(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    assert (await gateway.client.get(ACCOUNT, headers={"X-API-Key": key})).status_code == 200
    [record] = await gateway.identity.list_api_keys(account_id=account.id)
    await gateway.identity.revoke_api_key(account_id=account.id, key_id=record.id)

    response = await gateway.client.get(ACCOUNT, headers={"X-API-Key": key})
    assert_error(response, 401, "invalid_api_key")


@pytest.mark.parametrize(
    "value", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Bearer a b", "Token abc", "abc"]
)
async def test_malformed_authorization_header_is_401_unauthorized(
    gateway: Gateway, value: str
) -> None:
    response = await gateway.client.get(ACCOUNT, headers={"Authorization": value})
    body = assert_error(response, 401, "unauthorized")
    assert "Bearer" in body["error"]


# --- JWT failures


async def test_expired_jwt_is_401_token_expired(gateway: Gateway) -> None:
    account = await gateway.account()
    token = make_token(account, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600)
    response = await gateway.client.get(ACCOUNT, headers=bearer(token))
    assert_error(response, 401, "token_expired")
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_forged_jwt_is_401_invalid_token(gateway: Gateway) -> None:
    account = await gateway.account()
    token = make_token(account, secret="not-the-gateway-secret-" + "x" * 20)
    assert_error(await gateway.client.get(ACCOUNT, headers=bearer(token)), 401, "invalid_token")


async def test_forged_and_expired_jwt_is_invalid_not_expired(gateway: Gateway) -> None:
    account = await gateway.account()
    token = make_token(account, secret="z" * 40, exp=int(time.time()) - 3600)
    assert_error(await gateway.client.get(ACCOUNT, headers=bearer(token)), 401, "invalid_token")


async def test_wrong_audience_jwt_is_401_invalid_token(gateway: Gateway) -> None:
    account = await gateway.account()
    token = make_token(account, aud="someone-else")
    assert_error(await gateway.client.get(ACCOUNT, headers=bearer(token)), 401, "invalid_token")


async def test_wrong_issuer_jwt_is_401_invalid_token(gateway: Gateway) -> None:
    account = await gateway.account()
    token = make_token(account, iss="evil")
    assert_error(await gateway.client.get(ACCOUNT, headers=bearer(token)), 401, "invalid_token")


async def test_alg_none_jwt_is_401_invalid_token(gateway: Gateway) -> None:
    account = await gateway.account()
    token = make_token(account, secret="", algorithm="none")
    assert jwt.get_unverified_header(token)["alg"] == "none"
    assert_error(await gateway.client.get(ACCOUNT, headers=bearer(token)), 401, "invalid_token")


async def test_hs512_jwt_with_the_right_secret_is_refused(gateway: Gateway) -> None:
    account = await gateway.account()
    token = make_token(account, algorithm="HS512")
    assert_error(await gateway.client.get(ACCOUNT, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("claim", ["exp", "iat", "iss", "aud", "sub"])
async def test_jwt_missing_a_required_claim_is_401_invalid_token(
    gateway: Gateway, claim: str
) -> None:
    account = await gateway.account()
    token = make_token(account, drop=(claim,))
    assert_error(await gateway.client.get(ACCOUNT, headers=bearer(token)), 401, "invalid_token")


async def test_jwt_for_an_unknown_account_is_401_invalid_token(gateway: Gateway) -> None:
    token = make_token(None)
    assert_error(await gateway.client.get(ACCOUNT, headers=bearer(token)), 401, "invalid_token")


async def test_garbage_bearer_token_is_401_invalid_token(gateway: Gateway) -> None:
    response = await gateway.client.get(ACCOUNT, headers=bearer("not.a.jwt"))
    assert_error(response, 401, "invalid_token")


# --- order: header, query, bearer; the first present decides


async def test_invalid_api_key_header_next_to_a_valid_bearer_is_401(gateway: Gateway) -> None:
    account = await gateway.account()
    response = await gateway.client.get(
        ACCOUNT, headers={**gateway.bearer(account), "X-API-Key": f"avc_{'1' * 64}"}
    )
    assert_error(response, 401, "invalid_api_key")


async def test_invalid_query_key_next_to_a_valid_bearer_is_401(gateway: Gateway) -> None:
    account = await gateway.account()
    response = await gateway.client.get(
        ACCOUNT, params={"api_key": "nope"}, headers=gateway.bearer(account)
    )
    assert_error(response, 401, "invalid_api_key")


async def test_header_is_used_before_query_and_bearer(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    response = await gateway.client.get(
        ACCOUNT,
        params={"api_key": "garbage"},
        headers={"X-API-Key": key, "Authorization": "Bearer garbage"},
    )
    assert response.status_code == 200
    assert response.json()["id"] == account.id


async def test_query_key_is_used_before_bearer(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    response = await gateway.client.get(
        ACCOUNT, params={"api_key": key}, headers={"Authorization": "Bearer garbage"}
    )
    assert response.status_code == 200
    assert response.json()["id"] == account.id


async def test_invalid_header_key_next_to_a_valid_query_key_is_401(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    response = await gateway.client.get(
        ACCOUNT, params={"api_key": key}, headers={"X-API-Key": "avc_bad"}
    )
    assert_error(response, 401, "invalid_api_key")


# --- plans


async def test_starter_api_key_is_403_plan_required(gateway: Gateway) -> None:
    account = await gateway.account(plan="starter")
    key = await gateway.api_key(account)
    response = await gateway.client.get(ACCOUNT, headers={"X-API-Key": key})
    assert_error(response, 403, "plan_required")
    # The same account's dashboard session works.
    assert (await gateway.client.get(ACCOUNT, headers=gateway.bearer(account))).status_code == 200


async def test_premium_api_key_without_preview_is_403_plan_required(gateway: Gateway) -> None:
    account = await gateway.account(plan="premium", api_preview=False)
    key = await gateway.api_key(account)
    assert_error(
        await gateway.client.get(ACCOUNT, headers={"X-API-Key": key}), 403, "plan_required"
    )


async def test_premium_api_key_with_preview_works(gateway: Gateway) -> None:
    account = await gateway.account(plan="premium", api_preview=True)
    key = await gateway.api_key(account)
    response = await gateway.client.get(ACCOUNT, headers={"X-API-Key": key})
    assert response.status_code == 200
    assert response.json()["plan"] == "premium"


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(("plan", "preview"), [("premium", True), ("starter", False)])
async def test_enterprise_route_is_403_plan_required_for_other_plans(
    gateway: Gateway, method: str, plan: str, preview: bool
) -> None:
    account = await gateway.account(plan=plan, api_preview=preview)
    # A JWT session: plan_required comes from the route, not from the auth method.
    response = await gateway.client.request(
        method, "/probe/api/v1/presets", headers=gateway.bearer(account)
    )
    assert_error(response, 403, "plan_required")


async def test_enterprise_route_admits_enterprise_accounts(gateway: Gateway) -> None:
    account = await gateway.account(plan="enterprise")
    key = await gateway.api_key(account)
    response = await gateway.client.get("/probe/api/v1/presets", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert response.json() == {"principal": [account.id, "api_key"]}


# --- public routes: credentials optional, but checked when sent


async def test_public_route_without_credentials_admits_anonymous(gateway: Gateway) -> None:
    response = await gateway.client.get("/probe/api/v1/embed/tok123")
    assert response.status_code == 200
    assert response.json() == {"principal": None}


async def test_public_route_with_invalid_credentials_is_401(gateway: Gateway) -> None:
    response = await gateway.client.get(
        "/probe/api/v1/embed/tok123", headers={"X-API-Key": f"avc_{'2' * 64}"}
    )
    assert_error(response, 401, "invalid_api_key")
    response = await gateway.client.get("/probe/api/v1/embed/tok123", headers=bearer("x.y.z"))
    assert_error(response, 401, "invalid_token")


async def test_public_route_with_valid_credentials_names_the_owner(gateway: Gateway) -> None:
    account = await gateway.account(plan="starter")
    response = await gateway.client.get(
        "/probe/play/ptok/master.m3u8", headers=gateway.bearer(account)
    )
    assert response.json() == {"principal": [account.id, "jwt"]}


# --- logging


async def test_api_key_query_values_never_reach_the_logs(gateway: Gateway, logs: LogLines) -> None:
    account = await gateway.account()
    good = await gateway.api_key(account)
    unknown = "avc_" + secrets.token_hex(32)
    malformed = "sekrit-" + secrets.token_hex(8)

    ok = await gateway.client.get(ACCOUNT, params={"api_key": good})
    refused = await gateway.client.get(ACCOUNT, params={"api_key": unknown})
    bad = await gateway.client.get(ACCOUNT, params={"api_key": malformed})
    probe = await gateway.client.get("/probe/api/v1/videos", params={"api_key": good, "page": 2})

    assert [ok.status_code, refused.status_code, bad.status_code, probe.status_code] == [
        200,
        401,
        401,
        200,
    ]
    for value in (good, unknown, malformed, good[4:]):
        assert value not in logs.raw
    failures = logs.events("auth_failed")
    assert [line["code"] for line in failures] == ["invalid_api_key", "invalid_api_key"]
    assert {line["source"] for line in failures} == {"query"}
    assert {line["request_id"] for line in failures} == {
        refused.headers["x-request-id"],
        bad.headers["x-request-id"],
    }
    admitted = logs.events("request_admitted")
    assert admitted
    assert all(line["account_id"] == account.id for line in admitted)
