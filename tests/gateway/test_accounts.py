"""Login, the account endpoint, accounts storage and the gateway's generated secrets."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi.routing import APIRoute
from pydantic import SecretStr, ValidationError
from tests.gateway.conftest import (
    JWT_SECRET,
    PASSWORD,
    Gateway,
    StartGateway,
    fast_settings,
)
from tests.support.assertions import assert_error

from avc_common.config import Settings
from avc_common.documents import DuplicateKey
from avc_gateway.accounts.routes import router as accounts_router
from avc_gateway.accounts.service import EmailTaken
from avc_gateway.config import GatewaySettings
from avc_gateway.public_routes import match_route
from avc_gateway.secrets_store import SECRETS_FILE, resolve_secrets

LOGIN = "/api/v1/auth/login"
ACCOUNT = "/api/v1/account"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def login_body(email: str, password: str = PASSWORD) -> str:
    return json.dumps({"email": email, "password": password})


# --- login


async def test_login_with_curl_style_form_content_type_returns_a_working_token(
    gateway: Gateway,
) -> None:
    account = await gateway.account(plan="starter")
    # What `curl -d '{...}'` sends: JSON under a form content type.
    response = await gateway.client.post(LOGIN, content=login_body(account.email), headers=FORM)

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-ratelimit-limit"] == "10"
    assert response.headers["x-ratelimit-remaining"] == "9"
    claims = jwt.decode(
        body["access_token"], JWT_SECRET, algorithms=["HS256"], audience="avcaption-api"
    )
    assert claims["sub"] == account.id
    assert claims["iss"] == "avcaption"
    assert claims["exp"] - claims["iat"] == 3600

    me = await gateway.client.get(
        ACCOUNT, headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["id"] == account.id


async def test_login_email_is_case_insensitive(gateway: Gateway) -> None:
    account = await gateway.account(email="Mixed.Case@Example.com")
    assert account.email == "mixed.case@example.com"
    response = await gateway.client.post(
        LOGIN, json={"email": "  MIXED.case@example.COM ", "password": PASSWORD}
    )
    assert response.status_code == 200


async def test_wrong_password_and_unknown_email_look_the_same(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await gateway.account()
    dummy_checks: list[str] = []
    passwords = gateway.identity.passwords
    original = passwords.verify_dummy

    async def spy(password: str) -> None:
        dummy_checks.append(password)
        await original(password)

    monkeypatch.setattr(passwords, "verify_dummy", spy)

    wrong = await gateway.client.post(
        LOGIN, json={"email": account.email, "password": "wrong password!"}
    )
    unknown = await gateway.client.post(
        LOGIN, json={"email": "nobody@example.com", "password": PASSWORD}
    )

    wrong_body = assert_error(wrong, 401, "invalid_credentials")
    unknown_body = assert_error(unknown, 401, "invalid_credentials")
    assert wrong_body["error"] == unknown_body["error"]
    # Unknown emails still pay for one argon2 verification (no timing oracle).
    assert dummy_checks == [PASSWORD]


async def test_login_body_that_is_not_json_is_400(gateway: Gateway) -> None:
    response = await gateway.client.post(LOGIN, content="email=a@b.c&password=x", headers=FORM)
    assert_error(response, 400, "bad_request")


async def test_login_body_failing_the_schema_is_422_with_details(gateway: Gateway) -> None:
    response = await gateway.client.post(LOGIN, json={"email": "a@example.com"})
    assert response.status_code == 422
    body = response.json()
    assert set(body) == {"error", "code", "request_id", "details"}
    assert body["code"] == "validation_error"
    assert body["request_id"] == response.headers["x-request-id"]
    assert [e["loc"] for e in body["details"]["errors"]] == [["body", "password"]]

    not_an_object = await gateway.client.post(LOGIN, json=["a@example.com", "pw"])
    assert not_an_object.status_code == 422


async def test_huge_login_body_is_413(gateway: Gateway) -> None:
    response = await gateway.client.post(LOGIN, content=b"{" + b" " * 70_000 + b"}")
    assert_error(response, 413, "payload_too_large")


async def test_login_brute_force_is_429_per_ip_and_email(start_gateway: StartGateway) -> None:
    gateway = await start_gateway()
    account = await gateway.account()
    for attempt in range(10):
        response = await gateway.client.post(
            LOGIN, json={"email": account.email, "password": f"guess number {attempt}"}
        )
        assert_error(response, 401, "invalid_credentials")
        assert response.headers["x-ratelimit-remaining"] == str(9 - attempt)

    # The 11th attempt is refused even with the right password.
    blocked = await gateway.client.post(
        LOGIN, json={"email": account.email.upper(), "password": PASSWORD}
    )
    assert_error(blocked, 429, "rate_limited")
    assert 1 <= int(blocked.headers["retry-after"]) <= 60
    assert blocked.headers["x-ratelimit-limit"] == "10"
    assert blocked.headers["x-ratelimit-remaining"] == "0"

    # Another email from the same IP, and the same email from another IP, are not blocked.
    other = await gateway.account()
    ok = await gateway.client.post(LOGIN, json={"email": other.email, "password": PASSWORD})
    assert ok.status_code == 200
    transport = httpx.ASGITransport(app=gateway.app, client=("198.51.100.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as elsewhere:
        response = await elsewhere.post(LOGIN, json={"email": account.email, "password": PASSWORD})
    assert response.status_code == 200


async def test_forwarded_for_is_ignored_unless_trusted(start_gateway: StartGateway) -> None:
    untrusting = await start_gateway(gw=fast_settings(login_rate_limit_per_minute=1))
    body = {"email": "x@example.com", "password": "whatever12"}
    first = await untrusting.client.post(LOGIN, json=body, headers={"X-Forwarded-For": "1.1.1.1"})
    second = await untrusting.client.post(LOGIN, json=body, headers={"X-Forwarded-For": "2.2.2.2"})
    assert first.status_code == 401
    assert_error(second, 429, "rate_limited")

    trusting = await start_gateway(
        gw=fast_settings(login_rate_limit_per_minute=1, trust_forwarded_for=True),
        app_settings=Settings(data_dir=untrusting.app.state.settings.data_dir / "other"),
    )
    first = await trusting.client.post(
        LOGIN, json=body, headers={"X-Forwarded-For": "9.9.9.9, 1.1.1.1"}
    )
    second = await trusting.client.post(
        LOGIN, json=body, headers={"X-Forwarded-For": "9.9.9.9, 2.2.2.2"}
    )
    again = await trusting.client.post(LOGIN, json=body, headers={"X-Forwarded-For": "1.1.1.1"})
    assert [first.status_code, second.status_code, again.status_code] == [401, 401, 429]


async def test_outdated_password_hash_is_upgraded_on_login(start_gateway: StartGateway) -> None:
    weak = await start_gateway()
    account = await weak.account()
    stronger = await start_gateway(gw=fast_settings(password_hash_memory_kib=128))
    response = await stronger.client.post(
        LOGIN, json={"email": account.email, "password": PASSWORD}
    )
    assert response.status_code == 200
    stored = await stronger.identity.accounts.get(account.id)
    assert stored is not None
    assert "m=128," in stored.password_hash
    assert "m=64," in account.password_hash


# --- account


async def test_account_shows_plan_and_default_rate_limits(gateway: Gateway) -> None:
    account = await gateway.account(plan="premium", api_preview=True)
    response = await gateway.client.get(ACCOUNT, headers=gateway.bearer(account))
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "id": account.id,
        "email": account.email,
        "plan": "premium",
        "api_preview": True,
        "created_at": body["created_at"],
        "rate_limits": {"read": 300, "write": 60, "upload": 60, "stats": 60},
    }
    assert body["created_at"].endswith("Z")


async def test_account_rate_limits_include_overrides_and_configured_defaults(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(gw=fast_settings(stats_rate_limit_per_minute=90))
    account = await gateway.account()
    await gateway.identity.set_rate_limit(email=account.email, rate_class="read", per_minute=5000)
    await gateway.identity.set_rate_limit(email=account.email, rate_class="upload", per_minute=7)

    response = await gateway.client.get(
        ACCOUNT, headers={"X-API-Key": await gateway.api_key(account)}
    )
    assert response.json()["rate_limits"] == {
        "read": 5000,
        "write": 60,
        "upload": 7,
        "stats": 90,
    }
    # The override is what the read class actually allows.
    assert response.headers["x-ratelimit-limit"] == "5000"

    await gateway.identity.set_rate_limit(email=account.email, rate_class="read", per_minute=None)
    response = await gateway.client.get(ACCOUNT, headers=gateway.bearer(account))
    assert response.json()["rate_limits"]["read"] == 300


async def test_emails_are_unique_whatever_their_case(gateway: Gateway) -> None:
    await gateway.account(email="dup@example.com")
    with pytest.raises(EmailTaken):
        await gateway.account(email="DUP@example.com")
    # Enforced by the unique index too, not only by the service.
    account = await gateway.identity.accounts.get_by_email("dup@example.com")
    assert account is not None
    with pytest.raises(DuplicateKey):
        await gateway.identity.accounts.insert(
            type(account)(**{**account.__dict__, "id": "acct_" + "1" * 25})
        )


# --- secrets


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        GatewaySettings(jwt_secret=SecretStr("short"))


def test_generated_secrets_are_private_and_stable(tmp_path: Path) -> None:
    empty = GatewaySettings()
    if empty.jwt_secret.get_secret_value() or empty.api_key_secret.get_secret_value():
        pytest.skip("AVC_JWT_SECRET / AVC_API_KEY_SECRET are set in this environment")
    first = resolve_secrets(empty, tmp_path)
    second = resolve_secrets(empty, tmp_path)
    path = tmp_path / SECRETS_FILE
    assert first.generated_at == path
    assert second.generated_at is None
    assert (first.jwt_secret, first.api_key_secret) == (second.jwt_secret, second.api_key_secret)
    assert first.jwt_secret != first.api_key_secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["gateway.json"]  # no temporary left
    assert first.jwt_secret not in repr(first)

    # A secret set in the environment wins over the stored one.
    given = resolve_secrets(GatewaySettings(jwt_secret=SecretStr("e" * 32)), tmp_path)
    assert given.jwt_secret == "e" * 32
    assert given.api_key_secret == first.api_key_secret


async def test_sessions_and_keys_survive_a_restart_with_generated_secrets(
    start_gateway: StartGateway,
) -> None:
    no_secrets = fast_settings(jwt_secret=SecretStr(""), api_key_secret=SecretStr(""))
    before = await start_gateway(gw=no_secrets)
    account = await before.account()
    key = await before.api_key(account)
    token = before.bearer(account)

    after = await start_gateway(gw=no_secrets)
    assert (await after.client.get(ACCOUNT, headers={"X-API-Key": key})).status_code == 200
    assert (await after.client.get(ACCOUNT, headers=token)).status_code == 200


def test_every_identity_route_is_in_the_public_route_table() -> None:
    # The gatekeeper finds each route's access and rate class in PUBLIC_ROUTES.
    for route in accounts_router.routes:
        assert isinstance(route, APIRoute)
        for method in route.methods:
            match = match_route(method, route.path)
            assert match is not None, route.path
            assert match.route is not None, (method, route.path)
            assert match.route.path == route.path
            assert match.route.service == "gateway"
