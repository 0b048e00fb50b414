"""API keys: creation (JWT only), listing without secrets, revocation across replicas, last use."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from datetime import datetime

import httpx
import pytest
from tests.gateway.conftest import (
    API_KEY_SECRET,
    Gateway,
    StartGateway,
    fast_settings,
)
from tests.support.assertions import assert_error

from avc_common.web import LifespanManager
from avc_gateway.accounts.repository import API_KEYS
from avc_gateway.app import create_app

KEYS = "/api/v1/api-keys"
ACCOUNT = "/api/v1/account"


async def test_create_returns_the_key_once_and_stores_only_its_hmac(gateway: Gateway) -> None:
    account = await gateway.account()
    response = await gateway.client.post(
        KEYS,
        content='{"name": "  CI deploys  "}',
        headers={**gateway.bearer(account), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"id", "name", "key", "prefix", "created_at"}
    assert re.fullmatch(r"key_[0-9a-z]{25}", body["id"])
    assert re.fullmatch(r"avc_[0-9a-f]{64}", body["key"])
    assert body["prefix"] == body["key"][:12]
    assert body["name"] == "CI deploys"
    assert body["created_at"].endswith("Z")
    assert response.headers["x-ratelimit-limit"] == "60"  # write class

    doc = await gateway.app.state.documents.collection(API_KEYS).find_one({"_id": body["id"]})
    expected = hmac.new(API_KEY_SECRET.encode(), body["key"].encode(), hashlib.sha256).hexdigest()
    assert doc["key_hash"] == expected
    assert body["key"] not in repr(doc)
    assert doc["account_id"] == account.id
    assert doc["revoked_at"] is None

    me = await gateway.client.get(ACCOUNT, headers={"X-API-Key": body["key"]})
    assert me.status_code == 200


async def test_create_needs_a_jwt_session(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    by_key = await gateway.client.post(KEYS, json={"name": "x"}, headers={"X-API-Key": key})
    body = assert_error(by_key, 403, "jwt_required")
    assert "session" in body["error"]
    anonymous = await gateway.client.post(KEYS, json={"name": "x"})
    assert_error(anonymous, 401, "unauthorized")


async def test_starter_accounts_may_create_keys_which_then_need_a_plan(gateway: Gateway) -> None:
    account = await gateway.account(plan="starter")
    response = await gateway.client.post(KEYS, json={"name": "x"}, headers=gateway.bearer(account))
    assert response.status_code == 201
    used = await gateway.client.get(ACCOUNT, headers={"X-API-Key": response.json()["key"]})
    assert_error(used, 403, "plan_required")


@pytest.mark.parametrize(
    "body", ['{"name": ""}', '{"name": "   "}', '{"name": "' + "n" * 101 + '"}', "{}", "[]"]
)
async def test_create_validates_the_name(gateway: Gateway, body: str) -> None:
    account = await gateway.account()
    response = await gateway.client.post(KEYS, content=body, headers=gateway.bearer(account))
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"
    assert response.json()["details"]["errors"]


async def test_create_accepts_a_100_character_name(gateway: Gateway) -> None:
    account = await gateway.account()
    name = "n" * 100
    response = await gateway.client.post(KEYS, json={"name": name}, headers=gateway.bearer(account))
    assert response.status_code == 201
    assert response.json()["name"] == name


async def test_list_never_shows_keys_and_hides_revoked_and_foreign_ones(gateway: Gateway) -> None:
    account = await gateway.account()
    other = await gateway.account()
    first = await gateway.api_key(account, "first")
    await asyncio.sleep(0.01)  # creation times are kept to the millisecond
    second = await gateway.api_key(account, "second")
    foreign = await gateway.api_key(other, "foreign")
    revoked = await gateway.api_key(account, "revoked")
    [revoked_record] = [
        k
        for k in await gateway.identity.list_api_keys(account_id=account.id)
        if k.name == "revoked"
    ]
    await gateway.identity.revoke_api_key(account_id=account.id, key_id=revoked_record.id)

    response = await gateway.client.get(KEYS, headers={"X-API-Key": first})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data"}
    assert [item["name"] for item in body["data"]] == ["second", "first"]  # newest first
    for item in body["data"]:
        assert set(item) == {"id", "name", "prefix", "created_at", "last_used_at"}
    for secret in (first, second, foreign, revoked):
        assert secret not in response.text
        assert secret[12:20] not in response.text
    assert "key_hash" not in response.text
    assert response.headers["x-ratelimit-limit"] == "300"  # read class


async def test_delete_revokes_at_once(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    [record] = await gateway.identity.list_api_keys(account_id=account.id)
    assert (await gateway.client.get(ACCOUNT, headers={"X-API-Key": key})).status_code == 200

    response = await gateway.client.delete(f"{KEYS}/{record.id}", headers=gateway.bearer(account))
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["x-ratelimit-limit"] == "60"

    assert_error(
        await gateway.client.get(ACCOUNT, headers={"X-API-Key": key}), 401, "invalid_api_key"
    )
    listed = await gateway.client.get(KEYS, headers=gateway.bearer(account))
    assert listed.json() == {"data": []}
    again = await gateway.client.delete(f"{KEYS}/{record.id}", headers=gateway.bearer(account))
    assert_error(again, 404, "not_found")


async def test_a_key_can_revoke_itself(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    [record] = await gateway.identity.list_api_keys(account_id=account.id)
    response = await gateway.client.delete(f"{KEYS}/{record.id}", headers={"X-API-Key": key})
    assert response.status_code == 204
    assert_error(await gateway.client.get(KEYS, headers={"X-API-Key": key}), 401, "invalid_api_key")


@pytest.mark.parametrize("key_id", ["key_" + "0" * 25, "not-an-id", "acct_" + "0" * 25])
async def test_delete_unknown_key_is_404(gateway: Gateway, key_id: str) -> None:
    account = await gateway.account()
    response = await gateway.client.delete(f"{KEYS}/{key_id}", headers=gateway.bearer(account))
    assert_error(response, 404, "not_found")


async def test_delete_another_accounts_key_is_404_and_leaves_it_working(gateway: Gateway) -> None:
    owner = await gateway.account()
    intruder = await gateway.account()
    key = await gateway.api_key(owner)
    [record] = await gateway.identity.list_api_keys(account_id=owner.id)

    response = await gateway.client.delete(f"{KEYS}/{record.id}", headers=gateway.bearer(intruder))
    body = assert_error(response, 404, "not_found")
    unknown = await gateway.client.delete(
        f"{KEYS}/key_{'0' * 25}", headers=gateway.bearer(intruder)
    )
    assert body["error"] == unknown.json()["error"]  # no existence leak
    assert (await gateway.client.get(ACCOUNT, headers={"X-API-Key": key})).status_code == 200


async def test_revocation_reaches_a_second_replica_at_once(start_gateway: StartGateway) -> None:
    first = await start_gateway()
    second = await start_gateway()  # same database, its own app, limiter and connection
    account = await first.account()
    key = await first.api_key(account)
    [record] = await first.identity.list_api_keys(account_id=account.id)
    assert (await second.client.get(ACCOUNT, headers={"X-API-Key": key})).status_code == 200

    revoked = await first.client.delete(f"{KEYS}/{record.id}", headers=first.bearer(account))
    assert revoked.status_code == 204
    assert_error(
        await second.client.get(ACCOUNT, headers={"X-API-Key": key}), 401, "invalid_api_key"
    )


# --- last_used_at


async def test_last_used_at_is_kept_in_memory_and_flushed_once(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    [record] = await gateway.identity.list_api_keys(account_id=account.id)
    writes: list[tuple[str, datetime]] = []
    repository = gateway.identity.api_keys
    original = repository.record_last_used

    async def counting(key_id: str, at: datetime) -> None:
        writes.append((key_id, at))
        await original(key_id, at)

    # The tracker holds the repository's method: the spy goes where it calls.
    monkeypatch.setattr(gateway.identity.last_used, "_flush", counting)

    for _ in range(5):
        assert (await gateway.client.get(ACCOUNT, headers={"X-API-Key": key})).status_code == 200

    collection = gateway.app.state.documents.collection(API_KEYS)
    assert (await collection.find_one({"_id": record.id}))["last_used_at"] is None
    assert writes == []
    # The listing already shows this replica's latest use.
    listed = (await gateway.client.get(KEYS, headers=gateway.bearer(account))).json()["data"]
    assert listed[0]["last_used_at"] is not None

    assert await gateway.identity.last_used.flush() == 1
    assert len(writes) == 1
    stored = (await collection.find_one({"_id": record.id}))["last_used_at"]
    assert stored == writes[0][1]
    assert await gateway.identity.last_used.flush() == 0


async def test_last_used_at_is_flushed_in_the_background_and_on_shutdown(
    start_gateway: StartGateway,
) -> None:
    periodic = await start_gateway(gw=fast_settings(last_used_flush_seconds=0.05))
    account = await periodic.account()
    key = await periodic.api_key(account)
    [record] = await periodic.identity.list_api_keys(account_id=account.id)
    await periodic.client.get(ACCOUNT, headers={"X-API-Key": key})
    for _ in range(100):
        stored = await periodic.identity.api_keys.get_active_by_hash(record.key_hash)
        if stored is not None and stored.last_used_at is not None:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("last_used_at was never flushed")


async def test_pending_last_use_is_written_when_the_gateway_stops(gateway: Gateway) -> None:
    account = await gateway.account()
    key = await gateway.api_key(account)
    [record] = await gateway.identity.list_api_keys(account_id=account.id)
    app = create_app(gateway.app.state.settings, gateway_settings=fast_settings())
    async with (
        LifespanManager(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client,
    ):
        assert (await client.get(ACCOUNT, headers={"X-API-Key": key})).status_code == 200
        assert app.state.identity.last_used.pending(record.id) is not None
    stored = await gateway.identity.api_keys.get_active_by_hash(record.key_hash)
    assert stored is not None
    assert stored.last_used_at is not None
