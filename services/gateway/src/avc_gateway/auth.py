"""Who is calling: credentials taken from the request in the contract's order, and checked.

Order: `X-API-Key` header, then `?api_key=`, then `Authorization: Bearer <JWT>`. The first one
present is the one used; when it is invalid the answer is 401, never a fall-through to the next
(a bad key next to a good token must not pass unnoticed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from fastapi import Request

from avc_common.errors import AppError, Forbidden, PlanRequired, Unauthorized
from avc_common.logging import get_logger
from avc_gateway.accounts.repository import Account
from avc_gateway.accounts.service import Identity
from avc_gateway.principal import AuthMethod, Principal
from avc_gateway.public_routes import Access

API_KEY_HEADER: Final = "X-API-Key"
API_KEY_QUERY: Final = "api_key"
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="avcaption"'}

log = get_logger(__name__)


class MissingCredentials(Unauthorized):
    default_message: ClassVar[str] = (
        "Authentication is required: send an X-API-Key header, an api_key query parameter "
        "or an Authorization: Bearer token."
    )

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message, headers=_CHALLENGE)


class MalformedAuthorization(MissingCredentials):
    default_message: ClassVar[str] = "The Authorization header must be `Bearer <token>`."


class JwtRequired(Forbidden):
    code: ClassVar[str] = "jwt_required"
    default_message: ClassVar[str] = (
        "This endpoint needs a dashboard session (Authorization: Bearer <token> from "
        "POST /api/v1/auth/login); API keys cannot use it."
    )


CredentialSource = Literal["header", "query", "authorization"]


@dataclass(frozen=True)
class Credentials:
    method: AuthMethod
    source: CredentialSource
    value: str

    def __repr__(self) -> str:  # never the value: it is a key or a token
        return f"Credentials(method={self.method!r}, source={self.source!r})"


def extract_credentials(request: Request) -> Credentials | None:
    """Returns the first credentials present (None when there are none).
    Raises MalformedAuthorization for an Authorization header that is not `Bearer <token>`."""
    header = request.headers.get(API_KEY_HEADER)
    if header is not None:
        return Credentials("api_key", "header", header)
    query = request.query_params.get(API_KEY_QUERY)
    if query is not None:
        return Credentials("api_key", "query", query)
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise MalformedAuthorization()
        return Credentials("jwt", "authorization", token)
    return None


@dataclass(frozen=True)
class Authenticated:
    principal: Principal
    account: Account


async def authenticate(request: Request, identity: Identity) -> Authenticated | None:
    """Returns who sent the request (None without credentials); raises 401 for bad ones."""
    credentials: Credentials | None = None
    try:
        credentials = extract_credentials(request)
        if credentials is None:
            return None
        if credentials.method == "api_key":
            account, key = await identity.account_for_api_key(credentials.value)
            return Authenticated(_principal(account, "api_key", key.id), account)
        account = await identity.account_for_token(credentials.value)
        return Authenticated(_principal(account, "jwt", None), account)
    except AppError as exc:
        # Path only: the query string may hold the key itself.
        log.info(
            "auth_failed",
            code=exc.code,
            source=credentials.source if credentials else "authorization",
            method=request.method,
            path=request.url.path,
        )
        raise


def _principal(account: Account, method: AuthMethod, key_id: str | None) -> Principal:
    return Principal(
        account_id=account.id,
        email=account.email,
        plan=account.plan,
        api_preview=account.api_preview,
        method=method,
        key_id=key_id,
    )


def api_keys_allowed(principal: Principal) -> bool:
    """Returns whether the account's plan lets it use API keys."""
    return principal.plan == "enterprise" or (principal.plan == "premium" and principal.api_preview)


def check_access(principal: Principal | None, access: Access) -> None:
    """Raises 401/403 unless `principal` may use a route with this access."""
    if principal is None:
        if access == "public":
            return
        raise MissingCredentials()
    if principal.method == "api_key" and not api_keys_allowed(principal):
        raise PlanRequired(
            "API keys need the Enterprise plan, or Premium with the API preview; "
            "dashboard sessions work on every plan."
        )
    if access == "jwt" and principal.method != "jwt":
        raise JwtRequired()
    if access == "enterprise" and not principal.is_enterprise:
        raise PlanRequired("This endpoint is part of the Enterprise plan.")
