"""Templates, the dashboard's security headers, and small formatting filters."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from avc_gateway.dashboard.session import csrf_for_session, session_token

HERE: Final = Path(__file__).parent
STATIC_DIR: Final = HERE / "static"
STATIC_PATH: Final = "/dashboard/static"

# No inline script or style at all, nothing from another origin; blob: for the player's
# media source, data: for small images. Forms post only here; never framed.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; "
    "worker-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final[Mapping[str, str]] = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def _bytes(value: int | None) -> str:
    if value is None:
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{value} B"  # pragma: no cover - the loop always returns


def _duration(value: float | None) -> str:
    if value is None:
        return "—"
    seconds = round(value)
    return f"{seconds // 60}:{seconds % 60:02d}"


def _when(value: str | None) -> str:
    if not value:
        return "—"
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return value


templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.filters["bytes"] = _bytes
templates.env.filters["duration"] = _duration
templates.env.filters["when"] = _when
templates.env.globals["static"] = STATIC_PATH


def render(
    request: Request, name: str, context: Mapping[str, Any] | None = None, *, status: int = 200
) -> HTMLResponse:
    """Renders a dashboard page with the session's CSRF token and the security headers."""
    token = session_token(request)
    values: dict[str, Any] = {
        "csrf_token": csrf_for_session(token) if token else "",
        "logged_in": token is not None,
        "path": request.url.path,
    }
    values.update(context or {})
    response = templates.TemplateResponse(request, name, values, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    return response
