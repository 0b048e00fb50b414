"""The internal token: minted by the gateway, required by every service route that uses it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from fastapi import APIRouter
from pydantic import SecretStr

from avc_common.config import Settings
from avc_common.errors import Unauthorized
from avc_common.internal_auth import (
    INTERNAL_TOKEN_HEADER,
    Caller,
    CurrentCaller,
    mint_internal_token,
    verify_internal_token,
)
from avc_common.web import LifespanManager, create_service_app

SECRET = "s" * 40
CALLER = Caller(account_id="acct_1", plan="enterprise", key_id="key_1", request_id="r-1")


def test_round_trip_names_the_caller() -> None:
    assert (
        verify_internal_token(mint_internal_token(CALLER, secret=SECRET), secret=SECRET) == CALLER
    )


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not-a-jwt",
        mint_internal_token(CALLER, secret="o" * 40),  # another secret
        mint_internal_token(CALLER, secret=SECRET, ttl_seconds=-60),  # expired
        jwt.encode({"sub": "acct_1"}, SECRET, algorithm="HS256"),  # missing claims
        jwt.encode(
            {
                "sub": "a",
                "iss": "avcaption-gateway",
                "aud": "avcaption-internal",
                "iat": int(time.time()),
                "exp": int(time.time()) + 60,
            },
            None,
            algorithm="none",
        ),
    ],
    ids=["empty", "garbage", "other-secret", "expired", "missing-claims", "alg-none"],
)
def test_invalid_tokens_are_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        verify_internal_token(token, secret=SECRET)


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        mint_internal_token(CALLER, secret="short")


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(caller: CurrentCaller) -> dict[str, str]:
        return {"account_id": caller.account_id, "plan": caller.plan}

    settings = Settings(internal_secret=SecretStr(SECRET))
    app = create_service_app(service="upload", settings=settings, routers=[router])
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as c:
            yield c


async def test_service_route_without_token_is_401_in_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/whoami")
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == "unauthorized"
    assert body["request_id"] == response.headers["X-Request-ID"]


async def test_service_route_with_a_forged_token_is_401(client: httpx.AsyncClient) -> None:
    forged = mint_internal_token(CALLER, secret="f" * 40)
    response = await client.get("/whoami", headers={INTERNAL_TOKEN_HEADER: forged})
    assert response.status_code == 401


async def test_service_route_with_a_valid_token_sees_the_caller(client: httpx.AsyncClient) -> None:
    token = mint_internal_token(CALLER, secret=SECRET)
    response = await client.get("/whoami", headers={INTERNAL_TOKEN_HEADER: token})
    assert response.status_code == 200
    assert response.json() == {"account_id": "acct_1", "plan": "enterprise"}
