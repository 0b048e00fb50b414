"""Webhooks tests: the service app and the worker app in-process on the embedded adapters, and a
real local HTTPS receiver (trustme certificates, asyncio TLS server on 127.0.0.1 / ::1).

The sender reaches the receiver as `https://receiver.test:<port>/…`: an injected resolver maps
`receiver.test` to 127.0.0.1, the worker trusts the trustme CA through `AVC_WEBHOOKS_CA_FILE`,
and the SSRF refusal is relaxed for exactly the receiver's address through
`AVC_WEBHOOKS_ALLOWED_NETWORKS` (the certificate is for `receiver.test` only, so the TLS
handshake also proves SNI and verification use the host name, not the pinned IP).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from fastapi import FastAPI
from tests.support.assertions import eventually, internal_headers

from avc_common.config import Settings
from avc_common.events import Event
from avc_common.ids import new_id
from avc_common.runtime import Adapters
from avc_common.web import LifespanManager
from avc_webhooks.app import create_app
from avc_webhooks.config import WebhookSettings
from avc_webhooks.worker import create_worker_app

SECRET = "w" * 40
HOST = "receiver.test"
PUBLIC_IP = "93.184.216.34"  # a public address; nothing connects to it in these tests


def auth(account_id: str, plan: str = "enterprise") -> dict[str, str]:
    """Returns the headers the gateway would add for `account_id`."""
    return internal_headers(account_id, secret=SECRET, plan=plan)


def verify_standard_webhook(
    secret: str, headers: dict[str, str], body: bytes, *, tolerance: int = 300
) -> None:
    """The receiver's side of the Standard Webhooks spec, written from the spec (not from the
    service's code): raises AssertionError unless the request is authentic and fresh."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    assert timestamp.isdigit()
    assert abs(time.time() - int(timestamp)) <= tolerance
    assert secret.startswith("whsec_")
    key = base64.b64decode(secret[len("whsec_") :])
    assert 24 <= len(key) <= 64
    to_sign = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, to_sign, hashlib.sha256).digest()).decode()
    candidates = [
        part.split(",", 1)[1]
        for part in headers["webhook-signature"].split(" ")
        if part.startswith("v1,")
    ]
    assert any(hmac.compare_digest(c, expected) for c in candidates), "bad signature"


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


Reply = tuple[int, dict[str, str], bytes]


@dataclass
class Receiver:
    """A tiny HTTP/1.1 server, TLS (trustme) unless `tls=False`. Counts every TCP connection,
    records every request and answers with `reply(request, number)`."""

    ca: trustme.CA
    bind: str = "127.0.0.1"
    tls: bool = True
    cert_host: str = HOST
    reply: Callable[[Received, int], Reply] = field(default=lambda r, n: (200, {}, b"ok"))
    connections: int = 0
    requests: list[Received] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    tls_errors: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> Receiver:
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ca.issue_cert(self.cert_host).configure_cert(self._context)

        def record_sni(_: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
            self.sni.append(name)

        self._context.sni_callback = record_sni
        self._server = await asyncio.start_server(self._handle, self.bind, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, path: str = "/hook", host: str = HOST) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            if self.tls:
                try:
                    await writer.start_tls(self._context)
                except (ssl.SSLError, OSError) as exc:
                    self.tls_errors.append(str(exc))
                    return
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers: dict[str, str] = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Received(method, path, headers, body, time.monotonic())
            self.requests.append(request)
            status, extra, content = self.reply(request, len(self.requests))
            out = [f"HTTP/1.1 {status} X", f"Content-Length: {len(content)}", "Connection: close"]
            out += [f"{k}: {v}" for k, v in extra.items()]
            writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + content)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()


def static_resolver(table: dict[str, Sequence[str]], calls: list[str] | None = None) -> Any:
    """Returns a resolver answering from `table` (unknown names: NXDOMAIN)."""

    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host in table:
            return list(table[host])
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    return resolve


def ipv6_loopback_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "receiver-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def receiver(ca: trustme.CA) -> AsyncIterator[Receiver]:
    server = await Receiver(ca).start()
    yield server
    await server.stop()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", internal_secret=SECRET)


def receiver_settings(ca_file: Path, **overrides: Any) -> WebhookSettings:
    """Returns settings that reach the test receiver (and nothing else private)."""
    values: dict[str, Any] = {
        "allowed_networks": ("127.0.0.1/32", "::1/128"),
        "ca_file": ca_file,
        "retry_schedule": (0.05,) * 7,
        "retry_jitter": 0.0,
        "poll_interval_seconds": 0.02,
        "timeout_seconds": 5.0,
        "lease_seconds": 10.0,
    }
    values.update(overrides)
    return WebhookSettings(**values)


@pytest.fixture
def webhook_settings(ca_file: Path) -> WebhookSettings:
    return receiver_settings(ca_file)


@pytest.fixture
def resolver() -> Any:
    return static_resolver({HOST: ["127.0.0.1"], "public.test": [PUBLIC_IP]})


@dataclass
class WebhooksHarness:
    app: FastAPI
    client: httpx.AsyncClient
    settings: Settings
    webhook_settings: WebhookSettings
    resolver: Any
    account_id: str = field(default_factory=lambda: new_id("acct"))

    async def create(self, url: str, **body: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api/v1/webhooks", headers=auth(self.account_id), json={"url": url, **body}
        )
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def publish(self, *events: Event) -> None:
        for event in events:
            await self.app.state.bus.publish(event)

    async def deliveries(self, webhook_id: str) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"/api/v1/webhooks/{webhook_id}/deliveries?per_page=100", headers=auth(self.account_id)
        )
        assert response.status_code == 200, response.text
        data: list[dict[str, Any]] = response.json()["data"]
        return data

    async def wait_for_deliveries(self, webhook_id: str, count: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        async def enough() -> bool:
            nonlocal found
            found = await self.deliveries(webhook_id)
            return len(found) >= count

        await eventually(enough)
        return found

    async def wait_for_status(self, webhook_id: str, status: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []

        async def reached() -> bool:
            nonlocal found
            found = await self.deliveries(webhook_id)
            return bool(found) and all(d["status"] == status for d in found)

        await eventually(reached)
        return found

    @asynccontextmanager
    async def worker(
        self, webhook_settings: WebhookSettings | None = None, resolver: Any = None
    ) -> AsyncIterator[FastAPI]:
        """Runs a webhooks-worker app on the same database (its own adapters, as its own
        process would have) for the duration of the block."""
        app = create_worker_app(
            self.settings,
            webhook_settings=webhook_settings or self.webhook_settings,
            resolver=resolver or self.resolver,
        )
        async with LifespanManager(app):
            yield app


@asynccontextmanager
async def webhooks_app(
    settings: Settings, webhook_settings: WebhookSettings, resolver: Any
) -> AsyncIterator[WebhooksHarness]:
    async with AsyncExitStack() as stack:
        adapters = Adapters(settings)
        stack.push_async_callback(adapters.aclose)
        app = create_app(
            settings, adapters=adapters, webhook_settings=webhook_settings, resolver=resolver
        )
        await stack.enter_async_context(LifespanManager(app))
        client = await stack.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://webhooks")
        )
        yield WebhooksHarness(app, client, settings, webhook_settings, resolver)


@pytest.fixture
async def harness(
    settings: Settings, webhook_settings: WebhookSettings, resolver: Any
) -> AsyncIterator[WebhooksHarness]:
    async with webhooks_app(settings, webhook_settings, resolver) as h:
        yield h
