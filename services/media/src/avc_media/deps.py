"""FastAPI dependencies of the media routes."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from avc_common.errors import BadRequest, ValidationFailed
from avc_common.internal_auth import INTERNAL_TOKEN_HEADER, Caller, require_caller
from avc_common.web.body import read_raw_body
from avc_media.service import MediaContext

M = TypeVar("M", bound=BaseModel)


async def optional_caller(request: Request) -> Caller | None:
    """The caller when the gateway forwarded credentials, None for an anonymous request.

    The gateway forwards anonymous requests for public paths (embed, play) without an internal
    token; with credentials it sends a token naming the caller. A token that is present but not
    valid is refused (401), never taken as anonymous."""
    if not request.headers.get(INTERNAL_TOKEN_HEADER):
        return None
    return await require_caller(request)


OptionalCaller = Annotated[Caller | None, Depends(optional_caller)]


def get_context(request: Request) -> MediaContext:
    ctx: MediaContext = request.app.state.media
    return ctx


Context = Annotated[MediaContext, Depends(get_context)]


def json_body(model: type[M], *, optional: bool = False) -> Callable[[Request], Awaitable[M]]:
    """Returns a dependency parsing the request body as JSON into `model`, whatever the
    Content-Type says (`curl -d` sends form-urlencoded; see `avc_common.web.body`). An empty
    body is `{}` when `optional`. 400 not JSON, 413 over 64 KiB, 422 `validation_error`."""

    async def parse(request: Request) -> M:
        raw = await read_raw_body(request)
        if not raw.strip():
            if not optional:
                raise BadRequest("A JSON body is required.")
            raw = b"{}"
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise ValidationFailed("The request body must be a JSON object.")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            # Rendered by the common handler: `details.errors` as for FastAPI's own bodies.
            errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
            raise RequestValidationError(errors) from None

    return parse


def json_body_openapi(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """Returns `openapi_extra` documenting a body parsed by `json_body`."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
