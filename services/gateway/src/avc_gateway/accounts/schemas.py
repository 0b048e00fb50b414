"""Request and response bodies of the identity endpoints."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from avc_gateway.accounts.passwords import MAX_PASSWORD_LENGTH
from avc_gateway.principal import Plan

Email = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=320)]
KeyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class LoginRequest(BaseModel):
    email: Email = Field(min_length=1)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth token type
    expires_in: int = Field(description="Seconds until the token expires.")


class RateLimits(BaseModel):
    read: int
    write: int
    upload: int
    stats: int


class AccountResponse(BaseModel):
    id: str
    email: str
    plan: Plan
    api_preview: bool
    created_at: str
    rate_limits: RateLimits = Field(description="Effective requests per minute, per class.")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: KeyName


class ApiKeyItem(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first characters, to recognise it.")
    created_at: str
    last_used_at: str | None


class ApiKeyCreated(BaseModel):
    id: str
    name: str
    key: str = Field(description="The API key itself; shown this once only.")
    prefix: str
    created_at: str


class ApiKeyList(BaseModel):
    data: list[ApiKeyItem]
