"""Python client of the AVCaption API: `Client` (sync) and `AsyncClient`, resumable parallel
uploads (`upload(path)`), webhook verification (`verify_webhook`) and the `avc` command line."""

from __future__ import annotations

__version__ = "0.1.0"

from ._http import RetryEvent, RetryPolicy
from .async_client import AsyncClient
from .client import Client
from .errors import (
    ApiError,
    AvcError,
    ConnectionFailedError,
    RateLimitError,
    UploadExpiredError,
)
from .uploads import UploadProgress, UploadResult
from .webhooks import WebhookEvent, WebhookVerificationError, parse_event, verify_webhook

__all__ = [
    "ApiError",
    "AsyncClient",
    "AvcError",
    "Client",
    "ConnectionFailedError",
    "RateLimitError",
    "RetryEvent",
    "RetryPolicy",
    "UploadExpiredError",
    "UploadProgress",
    "UploadResult",
    "WebhookEvent",
    "WebhookVerificationError",
    "__version__",
    "parse_event",
    "verify_webhook",
]
