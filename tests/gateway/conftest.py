"""Gateway apps in-process (httpx.ASGITransport + LifespanManager) with cheap argon2 settings,
helpers to make accounts, sessions and keys, and a real Redis for shared rate limits."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import SecretStr

# Re-exported: tests/gateway/dashboard still imports it from here.
from tests.support.assertions import assert_error as assert_error

from avc_common.config import Settings
from avc_common.logging import configure_logging
from avc_common.ratelimit import RateLimiter, open_ratelimiter
from avc_common.runtime import Adapters
from avc_common.web import LifespanManager
from avc_gateway.accounts.repository import Account
from avc_gateway.accounts.service import Identity
from avc_gateway.app import create_app
from avc_gateway.config import GatewaySettings
from avc_gateway.gatekeeper import admit
from avc_gateway.public_routes import match_route

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "correct horse battery"
JWT_SECRET = "j" * 64
API_KEY_SECRET = "k" * 40


def fast_settings(**overrides: Any) -> GatewaySettings:
    """Returns gateway settings with fixed secrets and a cheap argon2 (tests only)."""
    values: dict[str, Any] = {
        "jwt_secret": SecretStr(JWT_SECRET),
        "api_key_secret": SecretStr(API_KEY_SECRET),
        "password_hash_time_cost": 1,
        "password_hash_memory_kib": 64,
        "password_hash_parallelism": 1,
        "last_used_flush_seconds": 3600,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@dataclass
class Gateway:
    app: FastAPI
    client: httpx.AsyncClient
    emails: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    @property
    def identity(self) -> Identity:
        identity: Identity = self.app.state.identity
        return identity

    async def account(
        self,
        *,
        plan: str = "enterprise",
        api_preview: bool = False,
        email: str | None = None,
        password: str = PASSWORD,
    ) -> Account:
        email = email or f"user{next(self.emails)}-{uuid.uuid4().hex[:8]}@example.com"
        return await self.identity.create_account(
            email=email, password=password, plan=plan, api_preview=api_preview
        )

    def bearer(self, account: Account) -> dict[str, str]:
        token = self.identity.tokens.issue(account.id).access_token
        return {"Authorization": f"Bearer {token}"}

    async def api_key(self, account: Account, name: str = "test key") -> str:
        _, key = await self.identity.create_api_key(account_id=account.id, name=name)
        return key


StartGateway = Callable[..., Awaitable[Gateway]]


def add_proxy_probe(app: FastAPI) -> None:
    """Adds `/probe/<public path>`: what the proxy will do — `admit` with the table's route for
    that path, then a streamed answer naming the caller (the headers middleware must reach it)."""

    async def probe(request: Request, path: str) -> StreamingResponse:
        match = match_route(request.method, "/" + path)
        assert match is not None, path
        assert match.route is not None, path
        principal = await admit(request, match.route)
        who = None if principal is None else [principal.account_id, principal.method]

        async def body() -> AsyncIterator[bytes]:
            yield json.dumps({"principal": who}).encode()

        return StreamingResponse(body(), media_type="application/json")

    app.add_api_route("/probe/{path:path}", probe, methods=["GET", "HEAD", "POST", "PUT", "DELETE"])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, internal_secret=SecretStr("i" * 40))


@pytest.fixture
def gateway_settings() -> GatewaySettings:
    return fast_settings()


@pytest.fixture
async def start_gateway(
    settings: Settings, gateway_settings: GatewaySettings
) -> AsyncIterator[StartGateway]:
    """Yields `start(...)`: a started gateway app and its client; all are stopped at the end."""
    async with AsyncExitStack() as stack:

        async def start(
            *,
            app_settings: Settings | None = None,
            gw: GatewaySettings | None = None,
            adapters: Adapters | None = None,
            client_ip: str = "203.0.113.7",
        ) -> Gateway:
            app = create_app(
                app_settings or settings, adapters=adapters, gateway_settings=gw or gateway_settings
            )
            add_proxy_probe(app)
            await stack.enter_async_context(LifespanManager(app))
            transport = httpx.ASGITransport(app=app, client=(client_ip, 50000))
            client = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://test")
            )
            return Gateway(app, client)

        yield start


@pytest.fixture
async def gateway(start_gateway: StartGateway) -> Gateway:
    return await start_gateway()


class PrefixedAdapters(Adapters):
    """Adapters whose rate limiter keeps its Redis keys under a per-test prefix."""

    def __init__(self, settings: Settings, *, key_prefix: str) -> None:
        super().__init__(settings)
        self._key_prefix = key_prefix

    async def ratelimiter(self) -> RateLimiter:
        async with self._lock:
            if self._ratelimiter is None:
                self._ratelimiter = open_ratelimiter(
                    self.settings.effective_ratelimit_url, key_prefix=self._key_prefix
                )
            return self._ratelimiter


@pytest.fixture
async def redis_adapters(settings: Settings) -> AsyncIterator[Callable[[], Adapters]]:
    """Yields a factory of adapters for one more gateway replica: same database, one real
    Redis, one key prefix per test (deleted afterwards)."""
    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except OSError:
        await client.aclose()
        pytest.skip(f"Redis: no server answers at {REDIS_URL}")
    prefix = f"avc-test-gw:{uuid.uuid4().hex}"
    redis_settings = settings.model_copy(update={"ratelimit_url": REDIS_URL})
    made: list[Adapters] = []

    def make() -> Adapters:
        adapters = PrefixedAdapters(redis_settings, key_prefix=prefix)
        made.append(adapters)
        return adapters

    try:
        yield make
    finally:
        for adapters in made:
            await adapters.aclose()
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


class LogLines:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def raw(self) -> str:
        return self.stream.getvalue()

    def events(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.raw.splitlines() if line.strip()]
        return [line for line in lines if line.get("event") == event]


@pytest.fixture
def logs() -> Iterator[LogLines]:
    root = logging.getLogger()
    level = root.level
    stream = io.StringIO()
    configure_logging(service="gateway-test", level="DEBUG", json=True, stream=stream)
    yield LogLines(stream)
    for handler in root.handlers[:]:
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
            root.removeHandler(handler)
    root.setLevel(level)
