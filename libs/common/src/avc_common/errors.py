"""One error hierarchy for every component, rendered into the public error shape
`{"error": message, "code": code, "request_id": id}` (+ `details` when there are any)."""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    """An error the API shows to its caller. Subclasses fix `status` and `code`."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "Internal server error."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)

    def body(self, request_id: str | None) -> dict[str, Any]:
        """Returns the public error shape."""
        out: dict[str, Any] = {"error": self.message, "code": self.code, "request_id": request_id}
        if self.details is not None:
            out["details"] = self.details
        return out


class BadRequest(AppError):
    status = 400
    code = "bad_request"
    default_message = "The request is malformed."


class Unauthorized(AppError):
    status = 401
    code = "unauthorized"
    default_message = "Authentication is required."


class Forbidden(AppError):
    status = 403
    code = "forbidden"
    default_message = "You are not allowed to do this."


class PlanRequired(Forbidden):
    code = "plan_required"
    default_message = "Your plan does not include this feature."


class NotFound(AppError):
    status = 404
    code = "not_found"
    default_message = "Not found."


class MethodNotAllowed(AppError):
    status = 405
    code = "method_not_allowed"
    default_message = "Method not allowed."


class Conflict(AppError):
    status = 409
    code = "conflict"
    default_message = "The request conflicts with the current state."


class Gone(AppError):
    status = 410
    code = "gone"
    default_message = "This resource is gone."


class PayloadTooLarge(AppError):
    status = 413
    code = "payload_too_large"
    default_message = "The request body is too large."


class UnsupportedMediaType(AppError):
    status = 415
    code = "unsupported_media_type"
    default_message = "Unsupported media type."


class ValidationFailed(AppError):
    status = 422
    code = "validation_error"
    default_message = "The request is invalid."


class RateLimited(AppError):
    status = 429
    code = "rate_limited"
    default_message = "Too many requests."


class InternalError(AppError):
    pass


class BadGateway(AppError):
    status = 502
    code = "bad_gateway"
    default_message = "An upstream service answered with an invalid response."


class ServiceUnavailable(AppError):
    status = 503
    code = "service_unavailable"
    default_message = "The service is temporarily unavailable."


class GatewayTimeout(AppError):
    status = 504
    code = "gateway_timeout"
    default_message = "An upstream service did not answer in time."


# Used when rendering statuses that were not raised as AppError (e.g. Starlette's own 404/405).
ERROR_BY_STATUS: dict[int, type[AppError]] = {
    cls.status: cls
    for cls in (
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        Gone,
        PayloadTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited,
        InternalError,
        BadGateway,
        ServiceUnavailable,
        GatewayTimeout,
    )
}
