"""Retries: a 429 with Retry-After from the real gateway (a tiny per-account limit set with
`avcaption admin set-rate-limit`) is waited out, not surfaced; 5xx and connection errors are
retried only for idempotent calls; 503 with Retry-After for any call; timeouts configurable.
The last ones use a small real HTTP server whose answers the test scripts."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from tests.client.conftest import Server, avc_env, run_avc
from tests.e2e.harness import free_port

from avcaption_client import AsyncClient, Client, RetryEvent, RetryPolicy
from avcaption_client.errors import (
    BadGatewayError,
    ConnectionFailedError,
    RateLimitError,
    ServerError,
)


def test_429_with_retry_after_is_waited_out(server: Server) -> None:
    account = server.account()
    server.stack.admin(
        "set-rate-limit", "--email", account.email, "--class", "read", "--per-minute", "2"
    )
    retries: list[RetryEvent] = []
    with Client(account.api_key, api_url=server.url, on_retry=retries.append) as client:
        emails = [client.get_account().email for _ in range(3)]
    assert emails == [account.email] * 3
    limited = [r for r in retries if isinstance(r.error, RateLimitError)]
    assert limited, "the third call was not rate limited"
    error = limited[0].error
    assert isinstance(error, RateLimitError)
    assert error.code == "rate_limited"
    assert error.retry_after is not None
    assert error.retry_after > 0
    assert limited[0].delay >= error.retry_after


def test_the_cli_waits_out_429_too(server: Server, tmp_path: Path) -> None:
    account = server.account()
    server.stack.admin(
        "set-rate-limit", "--email", account.email, "--class", "stats", "--per-minute", "1"
    )
    env = avc_env(server, account, tmp_path)
    first = run_avc("stats", "--json", env=env, cwd=tmp_path)
    second = run_avc("stats", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "rate_limited, retrying in" in second.stderr
    assert "videos" in second.stdout


@dataclass
class Script:
    """Answers of the scripted server, per path: a list consumed one per request."""

    answers: dict[str, list[tuple[int, dict[str, str]]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()

    async def answer(request: Request) -> Response:
        path = request.url.path
        script.calls[path] = script.calls.get(path, 0) + 1
        await request.body()
        if script.delay:
            await asyncio.sleep(script.delay)
        queue = script.answers.get(path) or [(200, {})]
        status, headers = queue.pop(0) if len(queue) > 1 else queue[0]
        if status >= 400:
            code = {
                429: "rate_limited",
                500: "internal_error",
                502: "bad_gateway",
                503: "service_unavailable",
            }[status]
            body = {"error": "scripted", "code": code, "request_id": f"req_{path[-4:]}"}
            return JSONResponse(body, status, headers=headers)
        return JSONResponse(
            {
                "upload_id": "upl_x",
                "chunk_size": 5,
                "total_chunks": 1,
                "expires_at": "2030-01-01T00:00:00Z",
                "total_videos": 0,
                "total_views": 0,
                "storage_used_bytes": 0,
                "videos_by_status": {"processing": 0, "ready": 0, "failed": 0},
            },
            headers=headers,
        )

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST", "PUT"])])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}", script
    server.should_exit = True
    thread.join(10)


FAST = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.05)


def test_5xx_retried_for_idempotent_calls_only(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.answers["/api/v1/stats"] = [(502, {}), (500, {}), (200, {})]
    script.answers["/api/v1/upload/init"] = [(502, {}), (200, {})]
    with Client("avc_k", api_url=url, retry=FAST) as client:
        assert client.get_stats().total_videos == 0
        with pytest.raises(BadGatewayError) as caught:
            client.init_upload("a.mp4", 10)
    assert script.calls["/api/v1/stats"] == 3
    assert script.calls["/api/v1/upload/init"] == 1  # not idempotent: surfaced at once
    assert caught.value.request_id == "req_init"


def test_503_with_retry_after_is_retried_for_any_call(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.answers["/api/v1/upload/init"] = [(503, {"Retry-After": "1"}), (200, {})]
    retries: list[RetryEvent] = []
    started = time.monotonic()
    with Client("avc_k", api_url=url, retry=FAST, on_retry=retries.append) as client:
        assert client.init_upload("a.mp4", 10).upload_id == "upl_x"
    assert time.monotonic() - started >= 1.0
    assert script.calls["/api/v1/upload/init"] == 2
    assert retries[0].delay >= 1.0


def test_retries_give_up_after_the_policy_s_limit(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.answers["/api/v1/stats"] = [(500, {})]
    with Client("avc_k", api_url=url, retry=FAST) as client, pytest.raises(ServerError):
        client.get_stats()
    assert script.calls["/api/v1/stats"] == 4  # the first try and 3 retries


async def test_timeouts_are_configurable(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    script.delay = 2.0
    async with AsyncClient("avc_k", api_url=url, timeout=0.3, retry=FAST) as client:
        started = time.monotonic()
        with pytest.raises(ConnectionFailedError):
            await client.init_upload("a.mp4", 10)  # not idempotent: one attempt
        assert time.monotonic() - started < 1.5
    assert script.calls["/api/v1/upload/init"] == 1


async def test_connection_refused_is_retried_then_surfaced() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    retries: list[RetryEvent] = []
    async with AsyncClient("avc_k", api_url=dead, retry=FAST, on_retry=retries.append) as client:
        with pytest.raises(ConnectionFailedError):
            await client.init_upload("a.mp4", 10)
    assert len(retries) == 3  # nothing was sent: safe to retry even a POST
