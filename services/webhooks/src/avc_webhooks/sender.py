"""One signed HTTP attempt of one delivery, and what came of it.

The URL is checked (and its host resolved) again on every attempt, and the connection goes to
the addresses that check returned (`ssrf`). Redirects are not followed; only 2xx succeeds.
"""

from __future__ import annotations

import asyncio
import email.utils
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

import httpx

from avc_common.timeutil import utcnow
from avc_webhooks.config import WebhookSettings
from avc_webhooks.signing import signed_headers
from avc_webhooks.ssrf import PinnedTransport, UrlPolicy, UrlRefused

Outcome = Literal[
    "success", "http_error", "redirect", "gone", "timeout", "network_error", "blocked"
]
OUTCOMES: Final[tuple[Outcome, ...]] = (
    "success",
    "http_error",
    "redirect",
    "gone",
    "timeout",
    "network_error",
    "blocked",
)
_MAX_ERROR_CHARS: Final = 500


@dataclass(frozen=True)
class AttemptResult:
    outcome: Outcome
    started_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response_body: str | None = None
    retry_after: float | None = None
    """Seconds the receiver asked to wait (`Retry-After`), already capped."""

    @property
    def succeeded(self) -> bool:
        return self.outcome == "success"


def parse_retry_after(value: str | None, *, now: datetime, cap: float) -> float | None:
    """Returns the seconds a `Retry-After` header asks for (delta-seconds or an HTTP date),
    at most `cap`; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        seconds = float(int(text))
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - now).total_seconds()
    return min(max(seconds, 0.0), cap)


def _short(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"


class Sender:
    def __init__(
        self,
        *,
        policy: UrlPolicy,
        ssl_context: ssl.SSLContext,
        settings: WebhookSettings,
        user_agent: str = "AVCaption-Webhooks",
    ) -> None:
        self._policy = policy
        self._ssl_context = ssl_context
        self._settings = settings
        self._user_agent = user_agent

    async def send(self, *, url: str, secret: str, message_id: str, body: str) -> AttemptResult:
        """Returns the outcome of POSTing `body`, signed, to `url` (never raises for the
        receiver's or the network's failures)."""
        started = utcnow()
        clock = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - clock) * 1000)

        try:
            target = await self._policy.check(url)
        except UrlRefused as exc:
            return AttemptResult("blocked", started, elapsed(), error=_short(exc.message))
        raw = body.encode()
        headers = {
            "content-type": "application/json",
            "user-agent": self._user_agent,
            # Raw bytes are capped as read: no compressed body can expand past the cap.
            "accept-encoding": "identity",
            **signed_headers(secret, message_id=message_id, timestamp=int(time.time()), body=raw),
        }
        limit = self._settings.response_read_limit_bytes
        timeout = self._settings.timeout_seconds
        transport = PinnedTransport(target, ssl_context=self._ssl_context)
        try:
            async with (
                asyncio.timeout(timeout),
                httpx.AsyncClient(
                    transport=transport,
                    follow_redirects=False,
                    trust_env=False,
                    timeout=httpx.Timeout(timeout),
                ) as client,
                client.stream("POST", target.url, content=raw, headers=headers) as response,
            ):
                received = bytearray()
                async for chunk in response.aiter_raw():
                    received += chunk
                    if len(received) >= limit:
                        break
        except (TimeoutError, httpx.TimeoutException):
            return AttemptResult(
                "timeout", started, elapsed(), error=f"No response within {timeout:g} s."
            )
        except httpx.HTTPError as exc:
            return AttemptResult(
                "network_error", started, elapsed(), error=_short(f"{type(exc).__name__}: {exc}")
            )
        code = response.status_code
        text = bytes(received[: self._settings.stored_response_bytes]).decode(
            "utf-8", errors="replace"
        )
        retry_after = parse_retry_after(
            response.headers.get("retry-after"),
            now=utcnow(),
            cap=self._settings.retry_after_max_seconds,
        )
        outcome: Outcome
        error: str | None = None
        if 200 <= code < 300:
            outcome = "success"
        elif code == 410:
            outcome, error = "gone", "The receiver answered 410 Gone: the webhook was disabled."
        elif 300 <= code < 400:
            where = response.headers.get("location", "")
            outcome, error = "redirect", _short(f"Redirects are not followed (to {where!r}).")
        else:
            outcome, error = "http_error", f"The receiver answered {code}."
        return AttemptResult(
            outcome,
            started,
            elapsed(),
            status_code=code,
            error=error,
            response_body=text,
            retry_after=None if outcome == "success" else retry_after,
        )
