"""structlog JSON logging shared by every component.

One formatter for everything: structlog's own loggers and stdlib loggers (uvicorn, aio_pika, ...)
both end in `ProcessorFormatter`, so every line gets the same keys (`timestamp`, `level`,
`service`, `request_id`, `account_id`, ...) and the same secret scrubbing.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, TextIO

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED: Final = "[REDACTED]"

# `?api_key=` must never reach a log line (API.md); also catch it percent-encoded inside
# another URL. Full API keys and webhook secrets are scrubbed wherever they appear.
_SECRET_PATTERNS: Final = (
    (re.compile(r"(?i)(api_key(?:=|%3D))[^&\s\"'#<>,;]*"), rf"\g<1>{REDACTED}"),
    (re.compile(r"avc_[0-9a-f]{64}"), REDACTED),
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), REDACTED),
)
_SECRET_KEYS: Final = frozenset(
    {
        "api_key",
        "x_api_key",
        "authorization",
        "password",
        "secret",
        "client_secret",
        "internal_secret",
        "access_token",
        "refresh_token",
        "cookie",
        "set_cookie",
    }
)
# Keys ProcessorFormatter uses internally; they are objects, not log content.
_META_KEYS: Final = frozenset({"_record", "_from_structlog"})
# Libraries that install their own handlers; we route them through the root handler instead.
_ROUTED_LOGGERS: Final = ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi")

_defaults: dict[str, str] = {"service": "avcaption"}


def scrub(value: Any) -> Any:
    """Returns `value` with secrets (api_key query values, API keys, webhook secrets) masked."""
    if isinstance(value, str):
        for pattern, replacement in _SECRET_PATTERNS:
            value = pattern.sub(replacement, value)
        return value
    if isinstance(value, Mapping):
        return {
            k: REDACTED if _is_secret_key(k) and v is not None else scrub(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(v) for v in value)
    return value


def _is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in _SECRET_KEYS


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: masks secrets in every field, including rendered tracebacks."""
    for key, value in list(event_dict.items()):
        if key in _META_KEYS:
            continue
        event_dict[key] = REDACTED if _is_secret_key(key) and value is not None else scrub(value)
    return event_dict


def _add_defaults(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # After merge_contextvars: a `service` bound for a request (all-in-one mode) wins.
    for key, value in _defaults.items():
        event_dict.setdefault(key, value)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_defaults,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


class _AvcHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler we own, so reconfiguring replaces it and leaves others alone."""


def configure_logging(
    *, service: str, level: str = "INFO", json: bool = True, stream: TextIO | None = None
) -> None:
    """Routes structlog and stdlib logging to one JSON-lines (or console) handler on `stream`
    (stdout by default). Safe to call again: the previous handler is replaced.
    Raises ValueError for an unknown level name."""
    numeric_level = logging.getLevelNamesMapping().get(level.upper())
    if numeric_level is None:
        raise ValueError(f"unknown log level {level!r}")
    _defaults["service"] = service
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=(stream or sys.stdout).isatty())
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Plain text traceback: structlog's dict tracebacks would log local variables.
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
    )
    handler = _AvcHandler(stream or sys.stdout)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _AvcHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    for name in _ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        routed.handlers.clear()
        routed.propagate = True
        # A library's dictConfig(disable_existing_loggers=True) or uvicorn's own config may have
        # silenced or raised them; the root's level decides from here on.
        routed.disabled = False
        routed.setLevel(logging.NOTSET)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def json_logs_wanted(forced: bool | None, stream: TextIO | None = None) -> bool:
    """JSON lines unless the stream (stdout by default) is a terminal, where people read
    them; `forced` (`AVC_LOG_JSON` given either way) decides when it is not None."""
    if forced is not None:
        return forced
    return not (stream or sys.stdout).isatty()


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """Returns a structlog logger (bind per-call fields as keyword arguments when logging)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name, **initial)
    return logger


def bind_log_context(**values: Any) -> None:
    """Binds fields (e.g. `account_id`) to every later log line of the current request/task.

    Call it from async code (an async dependency): sync dependencies run in a thread with a
    copied context, so what they bind is lost. The request middleware restores the context
    when the request ends."""
    structlog.contextvars.bind_contextvars(**values)


def log_context() -> MutableMapping[str, Any]:
    """Returns a copy of the fields currently bound for the request/task."""
    return structlog.contextvars.get_contextvars()
