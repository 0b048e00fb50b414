"""Capture what the services log, as parsed JSON lines, through the real logging setup.

structlog's `capture_logs` swaps the processor chain, which a logger already cached by
`configure_logging` (`cache_logger_on_first_use`) never sees again: in a full run, after another
test configured logging, it captures nothing. This goes through the configured handler instead.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

from avc_common.logging import configure_logging


class CapturedLogs:
    """What the handler wrote so far, re-read on every iteration (so it can be polled)."""

    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self._stream.getvalue().splitlines() if line.strip()]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.lines())


@contextmanager
def captured_logs(level: str = "DEBUG") -> Iterator[CapturedLogs]:
    """Routes every log line (structlog and stdlib) to a buffer for the duration."""
    root = logging.getLogger()
    previous_level = root.level
    stream = io.StringIO()
    configure_logging(service="test", level=level, json=True, stream=stream)
    try:
        yield CapturedLogs(stream)
    finally:
        for handler in root.handlers[:]:
            if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter):
                root.removeHandler(handler)
        root.setLevel(previous_level)
