"""`/api/v1/auth/login`, `/api/v1/account`, `/api/v1/api-keys`: thin, the work is in service.py.

Every route depends on `Admitted`/`Authenticated`, i.e. the gatekeeper with this route's entry of
PUBLIC_ROUTES (access and rate class come from that table, not from here).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from avc_common.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    PlanRequired,
    RateLimited,
    Unauthorized,
    ValidationFailed,
)
from avc_common.timeutil import to_rfc3339
from avc_common.web import error_responses
from avc_common.web.body import body_schema, parse_body
from avc_gateway.accounts.api_keys import InvalidApiKey
from avc_gateway.accounts.repository import ApiKey
from avc_gateway.accounts.schemas import (
    AccountResponse,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyItem,
    ApiKeyList,
    LoginRequest,
    RateLimits,
    TokenResponse,
)
from avc_gateway.accounts.service import AccountNotFound, ApiKeyLimitReached, InvalidCredentials
from avc_gateway.accounts.tokens import InvalidToken, TokenExpired
from avc_gateway.auth import JwtRequired
from avc_gateway.gatekeeper import Admitted, Authenticated, CurrentIdentity

router = APIRouter(tags=["identity"])

_AUTH_ERRORS = (Unauthorized, InvalidApiKey, TokenExpired, InvalidToken, PlanRequired, RateLimited)


@router.post(
    "/api/v1/auth/login",
    response_model=TokenResponse,
    summary="Log in: a dashboard session token",
    openapi_extra=body_schema(LoginRequest),
    responses=error_responses(
        BadRequest, InvalidCredentials, PayloadTooLarge, ValidationFailed, RateLimited
    ),
)
async def login(
    request: Request, response: Response, _: Admitted, identity: CurrentIdentity
) -> TokenResponse:
    body = await parse_body(request, LoginRequest)
    issued = await identity.login(email=body.email, password=body.password)
    response.headers["Cache-Control"] = "no-store"
    return TokenResponse(access_token=issued.access_token, expires_in=issued.expires_in)


@router.get(
    "/api/v1/account",
    response_model=AccountResponse,
    summary="The caller's account, with its effective rate limits",
    responses=error_responses(*_AUTH_ERRORS),
)
async def get_account(principal: Authenticated, identity: CurrentIdentity) -> AccountResponse:
    account = await identity.accounts.get(principal.account_id)
    if account is None:  # deleted between authentication and here
        raise AccountNotFound()
    return AccountResponse(
        id=account.id,
        email=account.email,
        plan=account.plan,
        api_preview=account.api_preview,
        created_at=to_rfc3339(account.created_at),
        rate_limits=RateLimits(**identity.effective_rate_limits(account)),
    )


@router.post(
    "/api/v1/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    summary="Create an API key (dashboard sessions only); the key is shown this once",
    openapi_extra=body_schema(ApiKeyCreate),
    responses=error_responses(
        *_AUTH_ERRORS,
        JwtRequired,
        BadRequest,
        ApiKeyLimitReached,
        PayloadTooLarge,
        ValidationFailed,
    ),
)
async def create_api_key(
    request: Request, principal: Authenticated, identity: CurrentIdentity
) -> ApiKeyCreated:
    body = await parse_body(request, ApiKeyCreate)
    record, key = await identity.create_api_key(account_id=principal.account_id, name=body.name)
    return ApiKeyCreated(
        id=record.id,
        name=record.name,
        key=key,
        prefix=record.prefix,
        created_at=to_rfc3339(record.created_at),
    )


@router.get(
    "/api/v1/api-keys",
    response_model=ApiKeyList,
    summary="The account's API keys (never the keys themselves)",
    responses=error_responses(*_AUTH_ERRORS),
)
async def list_api_keys(principal: Authenticated, identity: CurrentIdentity) -> ApiKeyList:
    keys = await identity.list_api_keys(account_id=principal.account_id)
    return ApiKeyList(data=[_item(key) for key in keys])


@router.delete(
    "/api/v1/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Revoke an API key; it stops working at once on every replica",
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def revoke_api_key(
    key_id: str, principal: Authenticated, identity: CurrentIdentity
) -> Response:
    await identity.revoke_api_key(account_id=principal.account_id, key_id=key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _item(key: ApiKey) -> ApiKeyItem:
    return ApiKeyItem(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        created_at=to_rfc3339(key.created_at),
        last_used_at=to_rfc3339(key.last_used_at) if key.last_used_at else None,
    )
