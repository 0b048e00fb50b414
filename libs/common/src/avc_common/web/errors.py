"""Every error a component can produce, rendered into the one public shape
`{"error", "code", "request_id"}` (+ `details`): AppError, Starlette's own 404/405/...,
request validation, and anything unexpected (500, logged with its traceback, never shown)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import body_limit
from starlette.responses import Response

from avc_common.errors import (
    ERROR_BY_STATUS,
    AppError,
    BadRequest,
    InternalError,
    ValidationFailed,
)
from avc_common.logging import get_logger
from avc_common.web.request_id import current_request_id

log = get_logger(__name__)

# Starlette's body limiter signals "413 already sent" with this exception; it must pass through.
PASSTHROUGH: Final[tuple[type[BaseException], ...]] = tuple(
    cls for cls in (getattr(body_limit, "_RequestBodyLimitResponseSent", None),) if cls
)


class ErrorBody(BaseModel):
    """The public error shape (API.md, "Conventions")."""

    error: str = Field(description="Human readable message.")
    code: str = Field(description="Machine readable code, e.g. `not_found`.")
    request_id: str | None = Field(description="The request's `X-Request-ID`.")
    details: dict[str, Any] | None = Field(
        default=None, description="Extra structured information, e.g. validation errors."
    )


def error_response(exc: AppError) -> JSONResponse:
    """Returns the JSON response for an AppError (its status, body and headers)."""
    return JSONResponse(exc.body(current_request_id()), status_code=exc.status, headers=exc.headers)


def app_error_for_status(
    status: int, message: str | None = None, *, headers: dict[str, str] | None = None
) -> AppError:
    """Returns an AppError for a bare HTTP status (Starlette's 404/405, FastAPI's 400...)."""
    return _error_class(status)(message, headers=headers)


@functools.cache
def _error_class(status: int) -> type[AppError]:
    cls = ERROR_BY_STATUS.get(status)
    if cls is not None:
        return cls
    # A status without its own class (408, 416...): same shape, code from the status phrase.
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    attrs = {
        "status": status,
        "code": re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_"),
        "default_message": f"{phrase}.",
    }
    return type(f"HTTPError{status}", (AppError,), attrs)


def _http_exception_message(exc: StarletteHTTPException) -> str | None:
    detail = exc.detail
    try:
        default = HTTPStatus(exc.status_code).phrase
    except ValueError:
        default = ""
    # Starlette's default detail is just the phrase ("Not Found"): use our own message then.
    if isinstance(detail, str) and detail and detail != default:
        return detail
    return None


def _validation_details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    # Only loc/msg/type: pydantic's `input` and `ctx` may echo what was sent (passwords, keys).
    out = []
    for err in errors:
        if not isinstance(err, dict):
            continue
        out.append(
            {
                "loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


def _render_validation(exc: RequestValidationError) -> AppError:
    details = {"errors": _validation_details(exc.errors())}
    if any(e["type"] == "json_invalid" for e in details["errors"]):
        return BadRequest("The request body is not valid JSON.", details=details)
    return ValidationFailed(details=details)


def _log_app_error(exc: AppError) -> None:
    if exc.status >= 500:
        log.warning("error_response", status=exc.status, code=exc.code, error=exc.message)


def _unexpected(exc: BaseException) -> AppError:
    """Returns what the client sees for an unexpected exception, after logging the traceback."""
    log.error("unhandled_exception", exc_type=type(exc).__name__, exc_info=exc)
    return InternalError()


def render_exception(exc: BaseException) -> AppError:
    """Returns the AppError a raised exception is shown as (logging server-side failures)."""
    if isinstance(exc, AppError):
        _log_app_error(exc)
        return exc
    if isinstance(exc, RequestValidationError):
        return _render_validation(exc)
    if isinstance(exc, StarletteHTTPException):
        headers = dict(exc.headers) if exc.headers else None
        return app_error_for_status(exc.status_code, _http_exception_message(exc), headers=headers)
    return _unexpected(exc)


async def _handle(_: Request, exc: Exception) -> Response:
    return error_response(render_exception(exc))


def install_error_handlers(app: FastAPI) -> None:
    """Makes `app` answer every error in the public shape (see the module docstring)."""
    app.add_exception_handler(AppError, _handle)
    app.add_exception_handler(StarletteHTTPException, _handle)
    app.add_exception_handler(RequestValidationError, _handle)
    # Last resort inside Starlette's ServerErrorMiddleware; ServiceMiddleware (closer to the
    # routes, so request id and metrics still see the response) normally gets there first.
    app.add_exception_handler(Exception, _handle)


_EXAMPLE_REQUEST_ID: Final = "req_0123456789abcdefghijklmno"


def error_responses(*errors: type[AppError]) -> dict[int | str, dict[str, Any]]:
    """Returns a FastAPI `responses=` mapping documenting these errors with `ErrorBody`, one
    entry per status with an example per code: `responses=error_responses(NotFound, Conflict)`.
    """
    by_status: dict[int, list[type[AppError]]] = {}
    for cls in errors:
        by_status.setdefault(cls.status, []).append(cls)
    out: dict[int | str, dict[str, Any]] = {}
    for status, classes in sorted(by_status.items()):
        out[status] = {
            "model": ErrorBody,
            "description": _describe(classes),
            "content": {
                "application/json": {
                    "examples": {
                        cls.code: {
                            "summary": cls.default_message,
                            "value": {
                                "error": cls.default_message,
                                "code": cls.code,
                                "request_id": _EXAMPLE_REQUEST_ID,
                            },
                        }
                        for cls in classes
                    }
                }
            },
        }
    return out


def _describe(classes: Iterable[type[AppError]]) -> str:
    return "; ".join(f"`{cls.code}`: {cls.default_message}" for cls in classes)
