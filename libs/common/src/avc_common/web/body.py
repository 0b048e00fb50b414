"""JSON request bodies read from the raw bytes whatever the Content-Type says (API.md,
"Conventions": `curl -d '{...}'` sends JSON as `application/x-www-form-urlencoded`).

The one JSON reader of every service, so every endpoint answers the same: 413 over the size
limit, 400 `bad_request` for a body that is not JSON (empty, malformed, or nested deeper than
MAX_JSON_DEPTH), 422 `validation_error` for JSON that is not an object or fails the model."""

from __future__ import annotations

import json
from typing import Any, Final, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from avc_common.errors import BadRequest, PayloadTooLarge, ValidationFailed

MAX_JSON_BODY_BYTES: Final = 64 * 1024
MAX_JSON_DEPTH: Final = 32
"""No request body of the API nests more than a few levels; deeper ones are refused before
anything walks them (json.loads itself fails with RecursionError at about 1,000)."""
NOT_AN_OBJECT: Final = "Input should be a JSON object"
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


def parse_json(raw: bytes) -> Any:
    """Returns the JSON value in `raw`; 400 `bad_request` when it is not JSON (also empty) or
    nests deeper than MAX_JSON_DEPTH (a recursion bomb is refused, never a 500)."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadRequest("The request body is not valid JSON.") from None
    if _depth_over(data, MAX_JSON_DEPTH):
        raise BadRequest(
            f"The request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep."
        )
    return data


def _depth_over(data: Any, limit: int) -> bool:
    """Returns whether `data` has containers nested more than `limit` deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def parse_json_object(raw: bytes, *, empty_is_object: bool = False) -> dict[str, Any]:
    """Returns the JSON object in `raw`: 400 `bad_request` when it is not JSON (an empty body
    too, unless `empty_is_object`), 422 `validation_error` when it is JSON but not an object."""
    if empty_is_object and not raw.strip():
        return {}
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The request body must be a JSON object.",
            details={"errors": [{"loc": ["body"], "msg": NOT_AN_OBJECT, "type": "dict_type"}]},
        )
    return data


def validate_body(data: dict[str, Any], model: type[M]) -> M:
    """Returns `data` validated as `model`; 422 `validation_error` with `details.errors`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        # Rendered by the common handler: same `details` as FastAPI's own body validation.
        errors = [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]
        raise RequestValidationError(errors) from None


async def read_json_body(request: Request, *, max_bytes: int = MAX_JSON_BODY_BYTES) -> Any:
    """Returns the parsed JSON body (413 over `max_bytes`, 400 when it is not JSON)."""
    return parse_json(await read_raw_body(request, max_bytes=max_bytes))


async def parse_body(request: Request, model: type[M], *, optional: bool = False) -> M:
    """Returns the JSON body validated as `model`: 413 over 64 KiB, 400 not JSON (or empty,
    unless `optional`: then it is `{}`), 422 `validation_error` not an object or not valid."""
    raw = await read_raw_body(request)
    return validate_body(parse_json_object(raw, empty_is_object=optional), model)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Returns `openapi_extra` documenting a body the route parses itself."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }
