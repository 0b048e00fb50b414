"""`/healthz` (the process is alive) and `/readyz` (its dependencies answer).

Readiness checks live in `app.state.readiness_checks`, so a lifespan can register one once it
has built the client it checks (`add_readiness_check(app, "documents", store.ping)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from avc_common.errors import ServiceUnavailable
from avc_common.logging import get_logger
from avc_common.web.errors import error_response

ReadinessCheck = Callable[[], Awaitable[None]]
"""An async callable that returns when its dependency is usable and raises otherwise."""

CheckResult = Literal["ok", "failed", "timeout"]

DEFAULT_CHECK_TIMEOUT: Final = 2.0

log = get_logger(__name__)


@dataclass(frozen=True)
class _Check:
    run: ReadinessCheck
    timeout: float


def add_readiness_check(
    app: FastAPI, name: str, check: ReadinessCheck, *, timeout: float | None = None
) -> None:
    """Registers (or replaces) a readiness check; `/readyz` fails while it raises or hangs."""
    app.state.readiness_checks[name] = _Check(
        check, timeout if timeout is not None else app.state.readiness_timeout
    )


class Consuming(Protocol):
    """What `add_consumer_readiness_check` asks (an `avc_common.bus.Subscription`)."""

    async def consuming(self) -> bool: ...


def add_consumer_readiness_check(app: FastAPI, queue: str, subscription: Consuming) -> None:
    """Registers `consumer:<queue>`: ready means consuming, so `/readyz` fails while the
    subscription has no live consumer (e.g. until it is restored after a broker restart)."""

    async def check() -> None:
        if not await subscription.consuming():
            raise RuntimeError(f"no live consumer on {queue}")

    add_readiness_check(app, f"consumer:{queue}", check)


def install_health(app: FastAPI, *, default_timeout: float = DEFAULT_CHECK_TIMEOUT) -> None:
    """Adds `/healthz` and `/readyz` to `app`, with no readiness checks yet."""
    app.state.readiness_checks = {}
    app.state.readiness_timeout = default_timeout
    app.include_router(_router)


async def _run(name: str, check: _Check) -> CheckResult:
    try:
        async with asyncio.timeout(check.timeout):
            await check.run()
    except TimeoutError:
        log.warning("readiness_check_timeout", check=name, timeout=check.timeout)
        return "timeout"
    except Exception as exc:
        # Why it failed goes to the log only: messages can hold hosts or credentials.
        log.warning("readiness_check_failed", check=name, exc_info=exc)
        return "failed"
    return "ok"


async def check_readiness(app: FastAPI) -> dict[str, CheckResult]:
    """Runs every readiness check of `app` concurrently; returns name -> result."""
    checks: dict[str, _Check] = dict(app.state.readiness_checks)
    results = await asyncio.gather(*(_run(name, check) for name, check in checks.items()))
    return dict(zip(checks, results, strict=True))


def _not_ready(results: dict[str, CheckResult]) -> ServiceUnavailable | None:
    failed = sorted(name for name, result in results.items() if result != "ok")
    if not failed:
        return None
    return ServiceUnavailable(f"Not ready: {', '.join(failed)}.", details={"checks": results})


async def require_ready(app: FastAPI) -> None:
    """Raises ServiceUnavailable unless every readiness check of `app` passes."""
    error = _not_ready(await check_readiness(app))
    if error is not None:
        raise error


_router = APIRouter()


@_router.get("/healthz", include_in_schema=False)
async def _healthz() -> dict[str, Any]:
    return {"status": "ok"}


@_router.get("/readyz", include_in_schema=False)
async def _readyz(request: Request) -> Response:
    results = await check_readiness(request.app)
    error = _not_ready(results)
    if error is not None:
        return error_response(error)
    return JSONResponse({"status": "ready", "checks": results})
