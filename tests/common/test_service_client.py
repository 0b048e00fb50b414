"""Service-to-service calls carry the caller and request id, in-process or over HTTP."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from pydantic import SecretStr

from avc_common.config import Settings
from avc_common.internal_auth import Caller, CurrentCaller
from avc_common.service_client import ServiceClients
from avc_common.web import LifespanManager, create_service_app

SECRET = "k" * 40


def _media_app(settings: Settings):  # type: ignore[no-untyped-def]
    router = APIRouter()

    @router.get("/internal/v1/whoami")
    async def whoami(caller: CurrentCaller) -> dict[str, str | None]:
        return {"account_id": caller.account_id, "request_id": caller.request_id}

    return create_service_app(service="media", settings=settings, routers=[router])


async def test_in_process_call_reaches_the_service_with_the_caller() -> None:
    settings = Settings(internal_secret=SecretStr(SECRET))
    media = _media_app(settings)
    clients = ServiceClients(settings, {"media": media})
    caller = Caller(account_id="acct_9", plan="starter", request_id="rid-42")
    async with LifespanManager(media):
        response = await clients.client("media").get(
            "/internal/v1/whoami", headers=clients.headers_for(caller)
        )
    await clients.aclose()
    assert response.status_code == 200
    assert response.json() == {"account_id": "acct_9", "request_id": "rid-42"}
    assert response.headers["X-Request-ID"] == "rid-42"


async def test_call_without_the_caller_is_refused() -> None:
    settings = Settings(internal_secret=SecretStr(SECRET))
    media = _media_app(settings)
    clients = ServiceClients(settings, {"media": media})
    async with LifespanManager(media):
        response = await clients.client("media").get("/internal/v1/whoami")
    await clients.aclose()
    assert response.status_code == 401


def test_network_clients_use_the_configured_urls() -> None:
    settings = Settings(media_url="http://media.svc:9000/", internal_secret=SecretStr(SECRET))
    clients = ServiceClients(settings)
    assert str(clients.client("media").base_url) == "http://media.svc:9000"
    with pytest.raises(ValueError, match="no URL setting"):
        clients.client("gateway")
