"""The gateway's per-request internal token, and its verifier for every service.

The gateway authenticates the client once, then sends each proxied request with a short-lived
token (HS256 over `AVC_INTERNAL_SECRET`) naming the caller. A request that reaches a service
without a valid token gets 401, so exposing a service's port by mistake gives nothing away.
Services that call each other (upload → media) mint the same kind of token for the caller they
are acting for.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Final

import jwt
from fastapi import Depends, Request

from avc_common.errors import Unauthorized
from avc_common.logging import bind_log_context
from avc_common.secrets import check_secret_length

INTERNAL_TOKEN_HEADER: Final = "X-AVC-Internal-Token"  # noqa: S105 - a header name
_ALGORITHMS: Final = ["HS256"]  # fixed here, never taken from the token
_ISSUER: Final = "avcaption-gateway"
_AUDIENCE: Final = "avcaption-internal"
DEFAULT_TTL_SECONDS: Final = 60
# Tolerates small clock differences between gateway and service hosts.
_LEEWAY_SECONDS: Final = 5


@dataclass(frozen=True)
class Caller:
    """Who a request to a service is made for, as the gateway established it."""

    account_id: str
    plan: str
    api_preview: bool = False
    key_id: str | None = None
    request_id: str | None = None


def check_secret(secret: str) -> bytes:
    """Returns the secret as bytes; raises ValueError when it is too short to be safe."""
    try:
        check_secret_length(secret)
    except ValueError as exc:
        raise ValueError(f"AVC_INTERNAL_SECRET {exc}") from None
    return secret.encode()


def mint_internal_token(
    caller: Caller, *, secret: str, ttl_seconds: int = DEFAULT_TTL_SECONDS
) -> str:
    """Returns a signed token naming `caller`, valid for `ttl_seconds`."""
    now = int(time.time())
    claims = {
        "iss": _ISSUER,
        "aud": _AUDIENCE,
        "sub": caller.account_id,
        "plan": caller.plan,
        "api_preview": caller.api_preview,
        "kid": caller.key_id,
        "rid": caller.request_id,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, check_secret(secret), algorithm="HS256")


def verify_internal_token(token: str, *, secret: str) -> Caller:
    """Returns the caller the token names; raises Unauthorized for anything else."""
    try:
        claims = jwt.decode(
            token,
            check_secret(secret),
            algorithms=_ALGORITHMS,
            audience=_AUDIENCE,
            issuer=_ISSUER,
            leeway=_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise Unauthorized("This service only accepts requests sent through the gateway.") from exc
    return Caller(
        account_id=str(claims["sub"]),
        plan=str(claims.get("plan", "")),
        api_preview=bool(claims.get("api_preview", False)),
        key_id=claims.get("kid"),
        request_id=claims.get("rid"),
    )


async def require_caller(request: Request) -> Caller:
    """FastAPI dependency: the verified caller of a service route (401 without a valid token)."""
    token = request.headers.get(INTERNAL_TOKEN_HEADER)
    if not token:
        raise Unauthorized("This service only accepts requests sent through the gateway.")
    caller = verify_internal_token(token, secret=request.app.state.settings.internal_secret_value)
    # Async on purpose: context bound in a sync dependency would not reach the route's logs.
    bind_log_context(account_id=caller.account_id)
    return caller


CurrentCaller = Annotated[Caller, Depends(require_caller)]
