"""Request and response bodies of the identity endpoints, and the JSON body reader they use.

JSON bodies are read from the raw bytes whatever the Content-Type says: the contract's own
examples send JSON with `curl -d`, i.e. as `application/x-www-form-urlencoded`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from avc_common.errors import BadRequest, PayloadTooLarge
from avc_gateway.accounts.passwords import MAX_PASSWORD_LENGTH
from avc_gateway.principal import Plan

MAX_JSON_BODY_BYTES: Final = 64 * 1024
_BODY_STATE: Final = "raw_json_body"

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


async def read_raw_body(request: Request, *, max_bytes: int = MAX_JSON_BODY_BYTES) -> bytes:
    """Returns the request body (at most `max_bytes`), kept on the request for later readers."""
    cached: bytes | None = getattr(request.state, _BODY_STATE, None)
    if cached is not None:
        return cached
    too_large = PayloadTooLarge(f"The request body must be at most {max_bytes} bytes.")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise too_large
        chunks.append(chunk)
    body = b"".join(chunks)
    setattr(request.state, _BODY_STATE, body)
    return body


async def read_json_body(request: Request) -> Any:
    """Returns the parsed JSON body; raises BadRequest when it is not JSON."""
    raw = await read_raw_body(request)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The request body is not valid JSON.") from None


M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> M:
    """Returns the JSON body validated as `model` (400 not JSON, 422 `validation_error`)."""
    data = await read_json_body(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Rendered by the common handler: same `details` as FastAPI's own body validation.
        errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        raise RequestValidationError(errors) from None


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Returns `openapi_extra` documenting a body the route parses itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
