"""One exception type per API error code, grouped under one type per HTTP status.

Every error the API answers has the shape `{"error", "code", "request_id", "details"?}`; the
exception raised carries those (`message`, `code`, `request_id`, `details`) and the `status`.
Catch a code's own class (`UploadExpiredError`), its status group (`ConflictError`) or
`ApiError` for all of them. A code this client does not know yet still gets its status group.
"""

from __future__ import annotations

from typing import Any

import httpx


class AvcError(Exception):
    """Anything this client raises on purpose."""


class ApiError(AvcError):
    """An error answer of the API."""

    status: int = 0
    default_code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        if status is not None:
            self.status = status
        self.request_id = request_id
        self.details = details or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return (
            f"{self.message} (code={self.code}, status={self.status}, request_id={self.request_id})"
        )


class ConnectionFailedError(AvcError):
    """The API could not be reached (after the retries allowed for the call)."""


class BadRequestError(ApiError):
    status = 400
    default_code = "bad_request"


class AuthenticationError(ApiError):
    status = 401
    default_code = "unauthorized"


class PermissionDeniedError(ApiError):
    status = 403
    default_code = "forbidden"


class NotFoundError(ApiError):
    status = 404
    default_code = "not_found"


class MethodNotAllowedError(ApiError):
    status = 405
    default_code = "method_not_allowed"


class ConflictError(ApiError):
    status = 409
    default_code = "conflict"


class GoneError(ApiError):
    status = 410
    default_code = "gone"


class PayloadTooLargeError(ApiError):
    status = 413
    default_code = "payload_too_large"


class UnsupportedMediaTypeError(ApiError):
    status = 415
    default_code = "unsupported_media_type"


class RangeNotSatisfiableError(ApiError):
    status = 416
    default_code = "range_not_satisfiable"


class UnprocessableError(ApiError):
    status = 422
    default_code = "validation_error"


class RateLimitError(ApiError):
    status = 429
    default_code = "rate_limited"


class ServerError(ApiError):
    status = 500
    default_code = "internal_error"


class BadGatewayError(ServerError):
    status = 502
    default_code = "bad_gateway"


class ServiceUnavailableError(ServerError):
    status = 503
    default_code = "service_unavailable"


class GatewayTimeoutError(ServerError):
    status = 504
    default_code = "gateway_timeout"


STATUS_ERRORS: dict[int, type[ApiError]] = {
    cls.status: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        MethodNotAllowedError,
        ConflictError,
        GoneError,
        PayloadTooLargeError,
        UnsupportedMediaTypeError,
        RangeNotSatisfiableError,
        UnprocessableError,
        RateLimitError,
        ServerError,
        BadGatewayError,
        ServiceUnavailableError,
        GatewayTimeoutError,
    )
}


def _code(code: str, base: type[ApiError]) -> type[ApiError]:
    name = "".join(part.capitalize() for part in code.split("_")) + "Error"
    return type(name, (base,), {"default_code": code, "__doc__": f"`{code}` ({base.status})."})


# code -> its class; the documented codes of the public API (docs/api.md and the OpenAPI
# document's examples). `tests/client` checks every code the served document names is here.
_CODES: dict[str, type[ApiError]] = {
    "bad_request": BadRequestError,
    "unauthorized": AuthenticationError,
    "not_found": NotFoundError,
    "rate_limited": RateLimitError,
    "payload_too_large": PayloadTooLargeError,
    "unsupported_media_type": UnsupportedMediaTypeError,
    "range_not_satisfiable": RangeNotSatisfiableError,
    "validation_error": UnprocessableError,
    "bad_gateway": BadGatewayError,
    "service_unavailable": ServiceUnavailableError,
    "gateway_timeout": GatewayTimeoutError,
    "method_not_allowed": MethodNotAllowedError,
    "internal_error": ServerError,
}
for _base, _names in {
    BadRequestError: (
        "chunk_out_of_range chunk_size_mismatch incomplete_body invalid_filename invalid_form "
        "invalid_header invalid_size invalid_title missing_header invalid_json invalid_path"
    ),
    AuthenticationError: "invalid_api_key invalid_credentials invalid_token token_expired",
    PermissionDeniedError: (
        "domain_not_allowed invalid_playback_token jwt_required plan_required "
        "playback_token_expired"
    ),
    NotFoundError: "upload_not_found",
    ConflictError: (
        "delivery_in_progress upload_completed upload_incomplete video_not_ready webhook_disabled "
        "webhook_limit_reached too_many_api_keys api_key_limit_reached preset_in_use email_taken"
    ),
    GoneError: "upload_expired",
    PayloadTooLargeError: "file_too_large",
    UnprocessableError: (
        "checksum_mismatch invalid_webhook_url preset_not_found invalid_subtitle "
        "translation_unavailable"
    ),
    RateLimitError: "too_many_open_uploads",
}.items():
    for _name in _names.split():
        _CODES[_name] = _code(_name, _base)

ERRORS_BY_CODE: dict[str, type[ApiError]] = dict(_CODES)
globals().update({cls.__name__: cls for cls in ERRORS_BY_CODE.values()})

# Named here so that type checkers and readers see the most used ones.
UploadNotFoundError: type[NotFoundError] = ERRORS_BY_CODE["upload_not_found"]  # type: ignore[assignment]
UploadExpiredError: type[GoneError] = ERRORS_BY_CODE["upload_expired"]  # type: ignore[assignment]
UploadIncompleteError: type[ConflictError] = ERRORS_BY_CODE["upload_incomplete"]  # type: ignore[assignment]
UploadCompletedError: type[ConflictError] = ERRORS_BY_CODE["upload_completed"]  # type: ignore[assignment]
ChecksumMismatchError: type[UnprocessableError] = ERRORS_BY_CODE["checksum_mismatch"]  # type: ignore[assignment]
PlanRequiredError: type[PermissionDeniedError] = ERRORS_BY_CODE["plan_required"]  # type: ignore[assignment]
InvalidApiKeyError: type[AuthenticationError] = ERRORS_BY_CODE["invalid_api_key"]  # type: ignore[assignment]


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Returns the `Retry-After` header in seconds (delta or HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def error_from_response(response: httpx.Response) -> ApiError:
    """Returns the exception for an error answer (any body: JSON of the public shape or not)."""
    status = response.status_code
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {}
    code = body.get("code") if isinstance(body.get("code"), str) else None
    message = body.get("error") if isinstance(body.get("error"), str) else None
    request_id = body.get("request_id") or response.headers.get("x-request-id")
    details = body.get("details") if isinstance(body.get("details"), dict) else None
    cls = ERRORS_BY_CODE.get(code or "")
    if cls is None:
        cls = STATUS_ERRORS.get(status) or (ServerError if status >= 500 else ApiError)
    return cls(
        message or f"HTTP {status} {response.reason_phrase}".strip(),
        code=code,
        status=status,
        request_id=str(request_id) if request_id else None,
        details=details,
        retry_after=retry_after_seconds(response),
    )
