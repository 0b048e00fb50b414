"""What both clients share: settings, the retry decision and how an `Op` becomes a request."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Final

import httpx

from . import __version__
from .errors import ApiError, RateLimitError, ServerError, ServiceUnavailableError
from .operations import FilePart, Op
from .uploads import ChunkBody

DEFAULT_API_URL: Final = "http://localhost:8080"
# Reads wait long: a chunk of 5 MiB on a slow link, or `complete` assembling a large file.
DEFAULT_TIMEOUT: Final = httpx.Timeout(connect=10.0, read=120.0, write=120.0, pool=120.0)


@dataclass(frozen=True)
class RetryPolicy:
    """When a failed call is sent again.

    - 429 and 503: after `Retry-After` (else the backoff), for every call: the server did not
      act on it. A 503 of a non-idempotent call is retried only when it says `Retry-After`.
    - connection errors, timeouts and other 5xx: with exponential backoff and jitter, only for
      idempotent calls (GET/PUT/DELETE, chunk uploads, `complete`); a refused connection
      (nothing was sent) for every call.
    """

    max_retries: int = 6
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    # A longer Retry-After is surfaced (RateLimitError.retry_after) instead of slept through.
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        ceiling: float = min(self.backoff_max, self.backoff_base * 2**attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def after_error(self, attempt: int, op: Op[Any], error: Exception) -> float | None:
        """Seconds to wait before sending `op` again after a transport error, or None."""
        if attempt >= self.max_retries:
            return None
        if op.idempotent or isinstance(error, httpx.ConnectError):
            return self.backoff(attempt)
        return None

    def after_response(self, attempt: int, op: Op[Any], error: ApiError) -> float | None:
        """Seconds to wait before sending `op` again after an error answer, or None."""
        if attempt >= self.max_retries:
            return None
        if isinstance(error, RateLimitError | ServiceUnavailableError):
            if error.retry_after is not None:
                if error.retry_after > self.max_retry_after:
                    return None
                # A whole second is the header's resolution: do not come back a hair early.
                return error.retry_after + random.uniform(0.05, 0.5)
            if isinstance(error, RateLimitError) or op.idempotent:
                return self.backoff(attempt)
            return None
        if isinstance(error, ServerError) and op.idempotent:
            return self.backoff(attempt)
        return None


@dataclass(frozen=True)
class RetryEvent:
    """Told to `on_retry` before each wait: what failed and how long the client waits."""

    method: str
    path: str
    attempt: int
    delay: float
    error: Exception


RetryHook = Callable[[RetryEvent], None]


def resolve_api_url(api_url: str | None) -> str:
    return (api_url or os.environ.get("AVC_API_URL") or DEFAULT_API_URL).rstrip("/")


def auth_headers(api_key: str | None, token: str | None) -> dict[str, str]:
    if api_key:
        return {"X-API-Key": api_key}
    if token:
        return {"Authorization": f"Bearer {token}"}
    return {}


def user_agent() -> str:
    return f"avcaption-client/{__version__} httpx/{httpx.__version__}"


def as_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(timeout)


class _CountingReader:
    """A file whose reads are reported (upload progress of a multipart body)."""

    def __init__(self, raw: IO[bytes], on_read: Callable[[int], None]) -> None:
        self._raw = raw
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        if data:
            self._on_read(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


@contextmanager
def request_kwargs(op: Op[Any], *, asynchronous: bool = False) -> Iterator[dict[str, Any]]:
    """Yields httpx `request()` arguments for one attempt of `op` (a file part opened anew)."""
    kwargs: dict[str, Any] = {"method": op.method, "url": op.path, "headers": dict(op.headers)}
    if op.params:
        kwargs["params"] = dict(op.params)
    if op.json is not None:
        kwargs["content"] = json.dumps(op.json).encode()
        kwargs["headers"]["Content-Type"] = "application/json"
    elif isinstance(op.content, ChunkBody) and asynchronous:
        kwargs["content"] = op.content.for_async()
    elif op.content is not None:
        kwargs["content"] = op.content
    if op.file is None:
        yield kwargs
        return
    part: FilePart = op.file
    with part.path.open("rb") as handle:
        body: Any = handle if part.on_read is None else _CountingReader(handle, part.on_read)
        kwargs["files"] = {part.field: (part.filename, body, part.content_type)}
        if op.data:
            kwargs["data"] = dict(op.data)
        yield kwargs
