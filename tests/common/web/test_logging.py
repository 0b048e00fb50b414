from __future__ import annotations

import io
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any

import httpx
import pytest
import structlog
from fastapi import APIRouter, Depends, FastAPI
from tests.support.logs import captured_logs

from avc_common.logging import (
    REDACTED,
    bind_log_context,
    configure_logging,
    get_logger,
    log_context,
    scrub,
)

MakeApp = Callable[..., FastAPI]
ClientFor = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]

API_KEY = "avc_" + "0123456789abcdef" * 4
log = get_logger("tests.web")


async def current_account() -> str:
    # Stands for the gateway's auth dependency.
    bind_log_context(account_id="acct_42")
    return "acct_42"


router = APIRouter()


@router.get("/work")
async def work(account: str = Depends(current_account)) -> dict[str, str]:
    log.info("doing_work", step=1)
    logging.getLogger("aio_pika").warning("stdlib %s line", "library")
    return {"account": account}


async def test_request_lines_carry_request_id_service_and_account(
    make_app: MakeApp, client_for: ClientFor, logs: Any
) -> None:
    async with client_for(make_app(service="media", routers=[router])) as client:
        await client.get("/work", headers={"X-Request-ID": "rid-7"})

    (own,) = logs.events("doing_work")
    (stdlib,) = logs.events("stdlib library line")
    for line in (own, stdlib):
        assert line["request_id"] == "rid-7"
        assert line["service"] == "media"
        assert line["account_id"] == "acct_42"
        assert datetime.fromisoformat(line["timestamp"]).tzinfo is not None
    assert own["level"] == "info"
    assert own["step"] == 1
    assert stdlib["level"] == "warning"
    assert stdlib["logger"] == "aio_pika"


async def test_context_does_not_leak_out_of_a_request(
    make_app: MakeApp, client_for: ClientFor, logs: Any
) -> None:
    bind_log_context(outer="kept")
    try:
        async with client_for(make_app(routers=[router])) as client:
            await client.get("/work")
        assert log_context() == {"outer": "kept"}
    finally:
        structlog.contextvars.unbind_contextvars("outer")


async def test_lifespan_lines_name_their_service(
    make_app: MakeApp, client_for: ClientFor, logs: Any
) -> None:
    async with client_for(make_app(service="stats")):
        pass
    assert [line["service"] for line in logs.events("component_started")] == ["stats"]


def test_lines_outside_requests_get_the_configured_service(logs: Any) -> None:
    log.info("standalone")
    (line,) = logs.events("standalone")
    assert line["service"] == "test-default"
    assert "request_id" not in line


def test_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(service="a", stream=first)
    configure_logging(service="b", stream=second)
    log.info("once")
    assert first.getvalue() == ""
    assert second.getvalue().count('"once"') == 1
    assert '"service": "b"' in second.getvalue()


def test_console_renderer_for_humans() -> None:
    out = io.StringIO()
    configure_logging(service="dev", json=False, stream=out)
    log.info("hello", url=f"/x?api_key={API_KEY}")
    assert "hello" in out.getvalue()
    assert API_KEY not in out.getvalue()


@pytest.mark.parametrize(
    "text",
    [
        f"GET /api/v1/videos?api_key={API_KEY}&page=2",
        f"GET /api/v1/videos?page=2&API_KEY={API_KEY}",
        f"https://cb.example/?next=%2Fplay%3Fapi_key%3D{API_KEY}",
        "GET /api/v1/videos?api_key=not-even-a-valid-key",
        f"Authorization failed for {API_KEY}",
    ],
)
def test_api_keys_are_redacted_from_messages_and_fields(logs: Any, text: str) -> None:
    log.info(text, url=text, nested={"urls": [text]})
    logging.getLogger("uvicorn.access").info('%s - "%s" %d', "127.0.0.1:1", text, 200)

    assert "not-even-a-valid-key" not in logs.raw
    assert API_KEY not in logs.raw
    assert REDACTED in logs.raw
    assert len(logs.all()) == 2


def test_secret_fields_and_tracebacks_are_redacted(logs: Any) -> None:
    try:
        raise ValueError(f"bad url /v?api_key={API_KEY}")
    except ValueError:
        log.exception("failed", api_key=API_KEY, password="hunter2", headers={"X-API-Key": "k"})
    (line,) = logs.events("failed")
    assert line["api_key"] == REDACTED
    assert line["password"] == REDACTED
    assert line["headers"] == {"X-API-Key": REDACTED}
    assert "ValueError: bad url /v?api_key=[REDACTED]" in line["exception"]
    assert API_KEY not in logs.raw
    assert "hunter2" not in logs.raw


def test_scrub_leaves_ordinary_values_alone() -> None:
    value = {"path": "/api/v1/videos/vid_1?page=2", "count": 3, "items": ("a", None)}
    assert scrub(value) == value


def test_uvicorn_loggers_silenced_elsewhere_are_routed_again() -> None:
    """Another library's `dictConfig(disable_existing_loggers=True)` (or uvicorn's access-log
    switch) must not silence the access lines of a later `configure_logging`."""
    access = logging.getLogger("uvicorn.access")
    access.disabled = True
    access.propagate = False
    access.setLevel(logging.CRITICAL)
    out = io.StringIO()
    configure_logging(service="again", json=True, stream=out)
    access.info('%s - "%s" %d', "127.0.0.1:1", "GET /healthz", 200)
    assert "GET /healthz" in out.getvalue()


def test_captured_logs_sees_a_logger_cached_by_an_earlier_configuration() -> None:
    """structlog's `capture_logs` misses a logger cached under an older configuration (it failed
    the worker tests in a full run); the tests' helper reads what the real handler writes."""
    configure_logging(service="first", level="INFO", json=True, stream=io.StringIO())
    cached = structlog.get_logger("tests.cached")
    cached.info("caches_the_chain")
    configure_logging(service="second", level="INFO", json=True, stream=io.StringIO())
    with captured_logs() as logs:
        cached.info("seen", n=1)
    assert [(line["event"], line["n"]) for line in logs] == [("seen", 1)]
