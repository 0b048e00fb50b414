"""The dashboard's pages and form actions, server-rendered, every read and change made through
the public API as the logged-in user (see `public_api`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Final
from urllib.parse import quote

from fastapi import APIRouter
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from avc_gateway.dashboard.guard import (
    LOGIN_PATH,
    CsrfRefused,
    LoginRequired,
    check_csrf,
    same_origin,
    session_api,
)
from avc_gateway.dashboard.public_api import ApiError, PublicApi
from avc_gateway.dashboard.rendering import SECURITY_HEADERS, render
from avc_gateway.dashboard.session import (
    CSRF_FIELD,
    clear_session,
    csrf_matches,
    login_csrf,
    session_token,
    set_login_csrf,
    set_session,
)

router = APIRouter(include_in_schema=False)

EVENTS: Final = (
    "video.uploaded",
    "video.encoded",
    "video.failed",
    "view.threshold",
    "subtitle.translated",
)
PER_PAGE: Final = 20
Handler = Callable[..., Awaitable[Response]]


def _redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def page(handler: Handler) -> Handler:
    """Sends the user to the login page when the session is missing or no longer accepted,
    and shows any other API error with its message and request id."""

    @wraps(handler)
    async def run(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return await handler(request, *args, **kwargs)
        except LoginRequired as exc:
            return _to_login(request, expired=exc.expired)
        except CsrfRefused as exc:
            return render(request, "error.html", {"error": exc}, status=exc.status)
        except ApiError as exc:
            if exc.status == 401:
                return _to_login(request, expired=True)
            return render(request, "error.html", {"error": exc}, status=exc.status)

    return run


def _to_login(request: Request, *, expired: bool) -> Response:
    response = _redirect(LOGIN_PATH + ("?expired=1" if expired else ""))
    if expired:
        clear_session(response, request)
    return response


async def _form(request: Request) -> FormData:
    """Returns the posted form once its CSRF token and origin are checked."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    check_csrf(request, sent if isinstance(sent, str) else None)
    return form


def _text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


def _page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return int(raw) if raw.isdigit() and 0 < int(raw) < 1_000_000 else 1


def has_api_access(account: dict[str, Any]) -> bool:
    """The rule the gateway applies to API keys: enterprise, or premium with the preview."""
    plan = account.get("plan")
    return plan == "enterprise" or (plan == "premium" and bool(account.get("api_preview")))


# -- entry and login ---------------------------------------------------------------------


@router.get("/")
@router.get("/dashboard")
@router.get("/dashboard/")
async def home(request: Request) -> Response:
    return _redirect("/dashboard/videos" if session_token(request) else LOGIN_PATH)


@router.get(LOGIN_PATH)
async def login_page(request: Request) -> Response:
    if session_token(request) and "expired" not in request.query_params:
        return _redirect("/dashboard/videos")
    return _login_form(request, expired="expired" in request.query_params)


def _login_form(
    request: Request,
    *,
    expired: bool = False,
    error: ApiError | None = None,
    email: str = "",
    status: int = 200,
) -> Response:
    csrf = login_csrf(request)
    context = {"login_csrf": csrf, "expired": expired, "error": error, "email": email}
    response = render(request, "login.html", context, status=status)
    set_login_csrf(response, request, csrf)
    return response


@router.post(LOGIN_PATH)
async def login(request: Request) -> Response:
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = request.cookies.get("avc_login_csrf", "")
    if (
        not same_origin(request)
        or not expected
        or not csrf_matches(expected, sent if isinstance(sent, str) else None)
    ):
        return render(request, "error.html", {"error": CsrfRefused()}, status=403)
    email = _text(form, "email")
    password = form.get("password")
    api = PublicApi(request, None)
    try:
        issued = await api.call(
            "POST",
            "/api/v1/auth/login",
            json={"email": email, "password": password if isinstance(password, str) else ""},
        )
    except ApiError as exc:
        return _login_form(request, error=exc, email=email, status=exc.status)
    response = _redirect("/dashboard/videos")
    set_session(response, request, issued["access_token"], max_age=int(issued["expires_in"]))
    return response


@router.post("/dashboard/logout")
@page
async def logout(request: Request) -> Response:
    await _form(request)
    response = _redirect(LOGIN_PATH)
    clear_session(response, request)
    return response


# -- videos ------------------------------------------------------------------------------


@router.get("/dashboard/videos")
@page
async def videos(request: Request) -> Response:
    api = session_api(request)
    number = _page_number(request)
    listing = await api.call("GET", "/api/v1/videos", params={"page": number, "per_page": PER_PAGE})
    return render(request, "videos.html", {"listing": listing, "page_number": number})


async def _video_page(
    request: Request, api: PublicApi, video_id: str, *, error: ApiError | None = None
) -> Response:
    video = await api.call("GET", f"/api/v1/videos/{quote(video_id, safe='')}")
    origin = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
    snippet = video.get("embed_html") or (
        f'<iframe src="{origin}/embed/{video["embed_token"]}" width="640" height="360" '
        'allow="autoplay; fullscreen" allowfullscreen></iframe>'
    )
    context = {"video": video, "snippet": snippet, "error": error}
    return render(request, "video.html", context, status=error.status if error else 200)


@router.get("/dashboard/videos/{video_id}")
@page
async def video(request: Request, video_id: str) -> Response:
    return await _video_page(request, session_api(request), video_id)


@router.post("/dashboard/videos/{video_id}")
@page
async def update_video(request: Request, video_id: str) -> Response:
    form = await _form(request)
    api = session_api(request)
    domains = [d.strip() for d in _text(form, "allowed_domains").replace(",", "\n").split()]
    change = {"title": _text(form, "title"), "allowed_domains": [d for d in domains if d]}
    try:
        await api.call("PUT", f"/api/v1/videos/{quote(video_id, safe='')}", json=change)
    except ApiError as exc:
        if exc.status in (401, 404):
            raise
        return await _video_page(request, api, video_id, error=exc)
    return _redirect(f"/dashboard/videos/{quote(video_id, safe='')}?saved=1")


@router.get("/dashboard/videos/{video_id}/delete")
@page
async def confirm_delete_video(request: Request, video_id: str) -> Response:
    video = await session_api(request).call("GET", f"/api/v1/videos/{quote(video_id, safe='')}")
    return render(
        request,
        "confirm.html",
        {
            "title": "Delete video",
            "question": f"Delete “{video.get('title') or video['id']}” and all its files?",
            "action": f"/dashboard/videos/{quote(video_id, safe='')}/delete",
            "button": "Delete video",
            "cancel": f"/dashboard/videos/{quote(video_id, safe='')}",
        },
    )


@router.post("/dashboard/videos/{video_id}/delete")
@page
async def delete_video(request: Request, video_id: str) -> Response:
    await _form(request)
    await session_api(request).call("DELETE", f"/api/v1/videos/{quote(video_id, safe='')}")
    return _redirect("/dashboard/videos?deleted=1")


# -- settings: API keys ------------------------------------------------------------------


async def _keys_page(
    request: Request,
    api: PublicApi,
    *,
    created: dict[str, Any] | None = None,
    error: ApiError | None = None,
) -> Response:
    account = await api.call("GET", "/api/v1/account")
    keys = await api.call("GET", "/api/v1/api-keys")
    context = {
        "account": account,
        "api_access": has_api_access(account),
        "keys": keys["data"],
        "created": created,
        "error": error,
    }
    return render(request, "api_keys.html", context, status=error.status if error else 200)


@router.get("/dashboard/settings")
async def settings(request: Request) -> Response:
    return _redirect("/dashboard/settings/api-keys")


@router.get("/dashboard/settings/api-keys")
@page
async def api_keys(request: Request) -> Response:
    return await _keys_page(request, session_api(request))


@router.post("/dashboard/settings/api-keys")
@page
async def create_api_key(request: Request) -> Response:
    form = await _form(request)
    api = session_api(request)
    try:
        created = await api.call("POST", "/api/v1/api-keys", json={"name": _text(form, "name")})
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _keys_page(request, api, error=exc)
    # Rendered here, never redirected to: the key is in this one answer only.
    return await _keys_page(request, api, created=created)


@router.get("/dashboard/settings/api-keys/{key_id}/revoke")
@page
async def confirm_revoke(request: Request, key_id: str) -> Response:
    keys = await session_api(request).call("GET", "/api/v1/api-keys")
    key = next((k for k in keys["data"] if k["id"] == key_id), None)
    name = f"“{key['name']}” ({key['prefix']}…)" if key else key_id
    return render(
        request,
        "confirm.html",
        {
            "title": "Revoke API key",
            "question": f"Revoke the API key {name}? Programs using it stop working at once.",
            "action": f"/dashboard/settings/api-keys/{quote(key_id, safe='')}/revoke",
            "button": "Revoke key",
            "cancel": "/dashboard/settings/api-keys",
        },
    )


@router.post("/dashboard/settings/api-keys/{key_id}/revoke")
@page
async def revoke(request: Request, key_id: str) -> Response:
    await _form(request)
    await session_api(request).call("DELETE", f"/api/v1/api-keys/{quote(key_id, safe='')}")
    return _redirect("/dashboard/settings/api-keys?revoked=1")


# -- webhooks ----------------------------------------------------------------------------


async def _webhooks_page(
    request: Request,
    api: PublicApi,
    *,
    created: dict[str, Any] | None = None,
    error: ApiError | None = None,
) -> Response:
    context: dict[str, Any] = {"events": EVENTS, "created": created, "error": error}
    try:
        context["listing"] = await api.call("GET", "/api/v1/webhooks", params={"per_page": 100})
    except ApiError as exc:
        if exc.code != "plan_required":
            raise
        context["plan_error"] = exc
    return render(request, "webhooks.html", context, status=error.status if error else 200)


@router.get("/dashboard/webhooks")
@page
async def webhooks(request: Request) -> Response:
    return await _webhooks_page(request, session_api(request))


def _events(form: FormData) -> list[str]:
    return [e for e in form.getlist("events") if isinstance(e, str) and e in EVENTS]


@router.post("/dashboard/webhooks")
@page
async def create_webhook(request: Request) -> Response:
    form = await _form(request)
    api = session_api(request)
    body: dict[str, Any] = {"url": _text(form, "url"), "events": _events(form) or list(EVENTS)}
    if description := _text(form, "description"):
        body["description"] = description
    try:
        created = await api.call("POST", "/api/v1/webhooks", json=body)
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _webhooks_page(request, api, error=exc)
    return await _webhooks_page(request, api, created=created)


async def _webhook_page(
    request: Request, api: PublicApi, webhook_id: str, *, error: ApiError | None = None
) -> Response:
    path = f"/api/v1/webhooks/{quote(webhook_id, safe='')}"
    endpoint = await api.call("GET", path)
    deliveries = await api.call("GET", f"{path}/deliveries", params={"per_page": 50})
    context = {"endpoint": endpoint, "deliveries": deliveries, "events": EVENTS, "error": error}
    return render(request, "webhook.html", context, status=error.status if error else 200)


@router.get("/dashboard/webhooks/{webhook_id}")
@page
async def webhook(request: Request, webhook_id: str) -> Response:
    return await _webhook_page(request, session_api(request), webhook_id)


@router.post("/dashboard/webhooks/{webhook_id}")
@page
async def update_webhook(request: Request, webhook_id: str) -> Response:
    form = await _form(request)
    api = session_api(request)
    change = {
        "url": _text(form, "url"),
        "events": _events(form),
        "enabled": _text(form, "enabled") == "on",
        "description": _text(form, "description"),
    }
    try:
        await api.call("PUT", f"/api/v1/webhooks/{quote(webhook_id, safe='')}", json=change)
    except ApiError as exc:
        if exc.status in (401, 404):
            raise
        return await _webhook_page(request, api, webhook_id, error=exc)
    return _redirect(f"/dashboard/webhooks/{quote(webhook_id, safe='')}?saved=1")


@router.get("/dashboard/webhooks/{webhook_id}/delete")
@page
async def confirm_delete_webhook(request: Request, webhook_id: str) -> Response:
    endpoint = await session_api(request).call(
        "GET", f"/api/v1/webhooks/{quote(webhook_id, safe='')}"
    )
    return render(
        request,
        "confirm.html",
        {
            "title": "Delete webhook",
            "question": f"Delete the webhook endpoint {endpoint['url']}? No more events go there.",
            "action": f"/dashboard/webhooks/{quote(webhook_id, safe='')}/delete",
            "button": "Delete webhook",
            "cancel": f"/dashboard/webhooks/{quote(webhook_id, safe='')}",
        },
    )


@router.post("/dashboard/webhooks/{webhook_id}/delete")
@page
async def delete_webhook(request: Request, webhook_id: str) -> Response:
    await _form(request)
    await session_api(request).call("DELETE", f"/api/v1/webhooks/{quote(webhook_id, safe='')}")
    return _redirect("/dashboard/webhooks?deleted=1")


@router.post("/dashboard/webhooks/{webhook_id}/deliveries/{delivery_id}/retry")
@page
async def retry_delivery(request: Request, webhook_id: str, delivery_id: str) -> Response:
    await _form(request)
    api = session_api(request)
    try:
        await api.call("POST", f"/api/v1/webhooks/deliveries/{quote(delivery_id, safe='')}/retry")
    except ApiError as exc:
        if exc.status == 401:
            raise
        return await _webhook_page(request, api, webhook_id, error=exc)
    return _redirect(f"/dashboard/webhooks/{quote(webhook_id, safe='')}?retried=1")


# -- stats -------------------------------------------------------------------------------


@router.get("/dashboard/stats")
@page
async def stats(request: Request) -> Response:
    api = session_api(request)
    totals = await api.call("GET", "/api/v1/stats")
    by_status = totals["videos_by_status"]
    peak = max([1, *by_status.values()])
    bars = [
        {"label": name, "count": count, "percent": round(100 * count / peak)}
        for name, count in by_status.items()
    ]
    return render(request, "stats.html", {"totals": totals, "bars": bars})
