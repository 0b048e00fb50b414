"""The dashboard session: the login's JWT in an `HttpOnly` cookie, and its CSRF tokens.

The browser never sees the token in script (no localStorage): the cookie is `HttpOnly`,
`SameSite=Lax`, `Secure` over https, and only the dashboard's own routes read it; the public
API never accepts a cookie, so it cannot be ridden cross-site. Every state-changing dashboard
request must carry a CSRF token: for a session, a hash of its token (stateless, so any gateway
replica checks it, and unguessable without the cookie); before login, a random value kept in
a second cookie and echoed by the form (double submit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE: Final = "avc_session"
LOGIN_CSRF_COOKIE: Final = "avc_login_csrf"
CSRF_FIELD: Final = "csrf_token"
CSRF_HEADER: Final = "x-csrf-token"
_CSRF_CONTEXT: Final = b"avcaption dashboard csrf v1\x00"


def session_token(request: Request) -> str | None:
    """Returns the session's token (the JWT from login), or None when logged out."""
    token = request.cookies.get(SESSION_COOKIE)
    return token or None


def csrf_for_session(token: str) -> str:
    """Returns the CSRF token of the session whose token is `token`."""
    digest = hashlib.sha256(_CSRF_CONTEXT + token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_matches(expected: str, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(expected.encode(), (sent or "").encode())


def is_https(request: Request) -> bool:
    """Whether the browser reached us over https: directly, or through a proxy we are told to
    trust (`AVC_TRUST_FORWARDED_FOR`) that says so in `X-Forwarded-Proto`."""
    if request.url.scheme == "https":
        return True
    settings = getattr(request.app.state, "gateway_settings", None)
    trusted = bool(getattr(settings, "trust_forwarded_for", False))
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return trusted and proto == "https"


def set_session(response: Response, request: Request, token: str, *, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )


def clear_session(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=is_https(request)
    )


def login_csrf(request: Request) -> str:
    """Returns the pre-login CSRF value of this browser (a new one when it has none)."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


def set_login_csrf(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        max_age=3600,
        path="/dashboard/login",
        httponly=True,
        samesite="lax",
        secure=is_https(request),
    )
