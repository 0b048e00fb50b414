"""What every dashboard route checks: a session, the CSRF token of a change, the origin."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request

from avc_common.errors import Forbidden
from avc_gateway.dashboard.public_api import PublicApi
from avc_gateway.dashboard.session import csrf_for_session, csrf_matches, session_token

LOGIN_PATH: Final = "/dashboard/login"


class LoginRequired(Exception):
    """No session, or the API said it is no longer valid: back to the login page."""

    def __init__(self, *, expired: bool) -> None:
        self.expired = expired
        super().__init__("login required")


class CsrfRefused(Forbidden):
    code = "csrf_failed"
    default_message = (
        "This request was refused: it did not carry the page's CSRF token, or came from "
        "another site. Reload the page and try again."
    )


def session_api(request: Request) -> PublicApi:
    """Returns the public API as the session's user; raises LoginRequired without a session."""
    token = session_token(request)
    if token is None:
        raise LoginRequired(expired=False)
    return PublicApi(request, token)


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin (`Origin`, else
    `Referer`); requests that name none (old browsers, curl) are left to the CSRF token."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source is None
    # Host only: behind a TLS-terminating proxy the browser's scheme is not the one we see.
    return urlsplit(source).netloc == request.headers.get("host", "")


def check_csrf(request: Request, sent: str | None) -> None:
    """Raises CsrfRefused unless `sent` is this session's token and the origin is ours."""
    token = session_token(request)
    if token is None:
        raise LoginRequired(expired=False)
    if not same_origin(request) or not csrf_matches(csrf_for_session(token), sent):
        raise CsrfRefused()
