"""JSON request bodies read from the raw bytes whatever the Content-Type says (API.md,
"Conventions": `curl -d '{...}'` sends JSON as `application/x-www-form-urlencoded`)."""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from avc_common.errors import BadRequest, PayloadTooLarge

MAX_JSON_BODY_BYTES: Final = 64 * 1024
_BODY_STATE: Final = "raw_json_body"

M = TypeVar("M", bound=BaseModel)


async def read_raw_body(request: Request, *, max_bytes: int = MAX_JSON_BODY_BYTES) -> bytes:
    """Returns the request body (413 over `max_bytes`), kept on the request for later readers."""
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


async def read_json_body(request: Request, *, max_bytes: int = MAX_JSON_BODY_BYTES) -> Any:
    """Returns the parsed JSON body (413 over `max_bytes`, 400 when it is not JSON)."""
    raw = await read_raw_body(request, max_bytes=max_bytes)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("The request body is not valid JSON.") from None


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
