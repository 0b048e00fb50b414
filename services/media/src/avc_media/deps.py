"""FastAPI dependencies of the media routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel

from avc_common.internal_auth import INTERNAL_TOKEN_HEADER, Caller, require_caller
from avc_common.web.body import parse_body
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
    """Returns a dependency parsing the request body as JSON into `model` with the common
    reader (`avc_common.web.body.parse_body`: whatever the Content-Type says; an empty body is
    `{}` when `optional`; 400 not JSON, 413 over 64 KiB, 422 `validation_error`)."""

    async def parse(request: Request) -> M:
        return await parse_body(request, model, optional=optional)

    return parse


def json_body_openapi(model: type[BaseModel], *, required: bool = True) -> dict[str, Any]:
    """Returns `openapi_extra` documenting a body parsed by `json_body`."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
