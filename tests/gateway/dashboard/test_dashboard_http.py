"""The dashboard over HTTP, in-process (no browser): session cookie, CSRF, CSP, errors.

Only the gateway's own API (login, account, API keys) answers here; what needs the other
services is covered by the browser tests against a real all-in-one process (tests/browser).
"""

from __future__ import annotations

import re
import time

import httpx
import jwt

from avc_gateway.accounts.repository import Account
from avc_gateway.dashboard.rendering import CONTENT_SECURITY_POLICY

from ..conftest import JWT_SECRET, PASSWORD, Gateway, StartGateway, assert_error, fast_settings

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


async def login_csrf(client: httpx.AsyncClient) -> str:
    page = await client.get("/dashboard/login")
    assert page.status_code == 200
    found = CSRF_INPUT.search(page.text)
    assert found, page.text
    return found.group(1)


async def log_in(gateway: Gateway, account: Account) -> str:
    """Logs the client in through the form; returns the page's CSRF token for the session."""
    client = gateway.client
    token = await login_csrf(client)
    form = {"csrf_token": token, "email": account.email, "password": PASSWORD}
    answer = await client.post("/dashboard/login", data=form)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/dashboard/videos"
    page = await client.get("/dashboard/settings/api-keys")
    assert page.status_code == 200, page.text
    found = CSRF_INPUT.search(page.text)
    assert found
    return found.group(1)


async def key_names(gateway: Gateway, account: Account) -> list[str]:
    listing = await gateway.client.get("/api/v1/api-keys", headers=gateway.bearer(account))
    return [k["name"] for k in listing.json()["data"]]


async def test_root_sends_a_visitor_to_the_login_page(gateway: Gateway) -> None:
    root = await gateway.client.get("/")
    assert root.status_code == 303
    assert root.headers["location"] == "/dashboard/login"
    page = await gateway.client.get("/dashboard/login")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self';" in CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in CONTENT_SECURITY_POLICY
    assert "<script>" not in page.text
    assert " style=" not in page.text


async def test_login_sets_an_httponly_lax_session_cookie(gateway: Gateway) -> None:
    account = await gateway.account()
    token = await login_csrf(gateway.client)
    form = {"csrf_token": token, "email": account.email, "password": PASSWORD}
    answer = await gateway.client.post("/dashboard/login", data=form)
    cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith("avc_session="))
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes  # plain http here; see the https test
    assert "localStorage" not in (await gateway.client.get("/dashboard/static/dashboard.js")).text


async def test_the_cookie_is_secure_over_https(gateway: Gateway) -> None:
    account = await gateway.account()
    client = httpx.AsyncClient(transport=gateway.client._transport, base_url="https://test")
    async with client:
        token = await login_csrf(client)
        form = {"csrf_token": token, "email": account.email, "password": PASSWORD}
        answer = await client.post("/dashboard/login", data=form)
    cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith("avc_session="))
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


async def test_login_without_its_csrf_token_is_refused(gateway: Gateway) -> None:
    account = await gateway.account()
    await login_csrf(gateway.client)  # the browser has the cookie, the form lacks the value
    form = {"email": account.email, "password": PASSWORD}
    answer = await gateway.client.post("/dashboard/login", data=form)
    assert answer.status_code == 403
    assert "CSRF token" in answer.text
    assert "avc_session" not in answer.headers.get("set-cookie", "")


async def test_wrong_password_shows_the_message_and_request_id(gateway: Gateway) -> None:
    account = await gateway.account()
    token = await login_csrf(gateway.client)
    form = {"csrf_token": token, "email": account.email, "password": "not the password"}
    answer = await gateway.client.post("/dashboard/login", data=form)
    assert answer.status_code == 401
    assert "Invalid email or password" in answer.text or "invalid" in answer.text.lower()
    assert answer.headers["x-request-id"] in answer.text
    assert 'role="alert"' in answer.text
    assert "avc_session" not in answer.headers.get("set-cookie", "")


async def test_an_expired_session_goes_back_to_login_with_a_message(gateway: Gateway) -> None:
    account = await gateway.account()
    now = int(time.time())
    claims = {"iss": "avcaption", "aud": "avcaption-api", "sub": account.id}
    claims |= {"iat": now - 7200, "exp": now - 3600, "jti": "expired"}
    gateway.client.cookies.set("avc_session", jwt.encode(claims, JWT_SECRET, algorithm="HS256"))
    answer = await gateway.client.get("/dashboard/settings/api-keys")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/login?expired=1"
    assert 'avc_session=""' in answer.headers["set-cookie"]  # cleared
    page = await gateway.client.get("/dashboard/login?expired=1")
    assert "Your session has expired" in page.text


async def test_a_form_post_without_the_csrf_token_changes_nothing(gateway: Gateway) -> None:
    account = await gateway.account()
    token = await log_in(gateway, account)
    refused = await gateway.client.post("/dashboard/settings/api-keys", data={"name": "evil"})
    assert refused.status_code == 403
    wrong = {"name": "evil", "csrf_token": token[:-2] + "xx"}
    assert (
        await gateway.client.post("/dashboard/settings/api-keys", data=wrong)
    ).status_code == 403
    cross = await gateway.client.post(
        "/dashboard/settings/api-keys",
        data={"name": "evil", "csrf_token": token},
        headers={"origin": "http://attacker.example"},
    )
    assert cross.status_code == 403
    assert await key_names(gateway, account) == []

    made = await gateway.client.post(
        "/dashboard/settings/api-keys",
        data={"name": "laptop", "csrf_token": token},
        headers={"origin": "http://test"},
    )
    assert made.status_code == 200
    key = re.search(r'value="(avc_[0-9a-f]{64})"', made.text)
    assert key, made.text
    assert "shown this once" in made.text
    assert await key_names(gateway, account) == ["laptop"]
    works = await gateway.client.get("/api/v1/account", headers={"X-API-Key": key.group(1)})
    assert works.status_code == 200


async def test_the_relay_needs_the_csrf_header_for_changes(gateway: Gateway) -> None:
    account = await gateway.account()
    token = await log_in(gateway, account)
    refused = await gateway.client.post("/dashboard/api/v1/api-keys", json={"name": "evil"})
    assert_error(refused, 403, "csrf_failed")
    listed = await gateway.client.get("/dashboard/api/v1/api-keys")
    assert listed.status_code == 200
    assert listed.json()["data"] == []
    made = await gateway.client.post(
        "/dashboard/api/v1/api-keys", json={"name": "script"}, headers={"x-csrf-token": token}
    )
    assert made.status_code == 201, made.text
    assert made.json()["key"].startswith("avc_")
    # An API error comes back in the public shape, with the browser's request id.
    missing = await gateway.client.delete(
        "/dashboard/api/v1/api-keys/key_nope",
        headers={"x-csrf-token": token, "x-request-id": "dash-test-1"},
    )
    body = assert_error(missing, 404, missing.json()["code"])
    assert body["request_id"] == "dash-test-1"


async def test_the_relay_without_a_session_is_a_401(gateway: Gateway) -> None:
    answer = await gateway.client.get("/dashboard/api/v1/account")
    assert_error(answer, 401, "unauthorized")


async def test_a_plan_without_api_access_is_told_so(gateway: Gateway) -> None:
    account = await gateway.account(plan="starter")
    await log_in(gateway, account)
    page = await gateway.client.get("/dashboard/settings/api-keys")
    assert 'id="no-api-access"' in page.text
    assert "does not include API access" in page.text
    enterprise = await gateway.account(email=None)
    gateway.client.cookies.clear()
    await log_in(gateway, enterprise)
    assert (
        'id="no-api-access"' not in (await gateway.client.get("/dashboard/settings/api-keys")).text
    )


async def test_docs_and_pages_name_no_outside_host(gateway: Gateway) -> None:
    outside = re.compile(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE)
    login = await gateway.client.get("/dashboard/login")
    assert not outside.search(login.text)
    await log_in(gateway, await gateway.account())
    for path in ("/docs", "/dashboard/settings/api-keys"):
        page = await gateway.client.get(path)
        assert page.status_code == 200, path
        assert not outside.search(page.text), (path, outside.findall(page.text))
    docs = (await gateway.client.get("/docs")).text
    for asset in re.findall(r'(?:src|href)="(/[^"]+)"', docs):
        assert (await gateway.client.get(asset)).status_code == 200, asset
    assert '"validatorUrl": null' in docs
    for ours in ("dashboard.css", "dashboard.js", "videos.js", "video.js"):
        text = (await gateway.client.get(f"/dashboard/static/{ours}")).text
        assert not re.search(r"https?://", text), ours


async def test_behind_a_trusted_tls_proxy_the_cookie_is_secure_and_forms_work(
    start_gateway: StartGateway,
) -> None:
    gateway = await start_gateway(gw=fast_settings(trust_forwarded_for=True))
    account = await gateway.account()
    proxied = {"x-forwarded-proto": "https", "origin": "https://test"}
    token = await login_csrf(gateway.client)
    form = {"csrf_token": token, "email": account.email, "password": PASSWORD}
    answer = await gateway.client.post("/dashboard/login", data=form, headers=proxied)
    assert answer.status_code == 303, answer.text
    cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith("avc_session="))
    assert "secure" in {part.strip().lower() for part in cookie.split(";")}


async def test_x_forwarded_proto_is_ignored_unless_the_proxy_is_trusted(gateway: Gateway) -> None:
    account = await gateway.account()
    token = await login_csrf(gateway.client)
    form = {"csrf_token": token, "email": account.email, "password": PASSWORD}
    answer = await gateway.client.post(
        "/dashboard/login", data=form, headers={"x-forwarded-proto": "https"}
    )
    cookie = next(v for v in answer.headers.get_list("set-cookie") if v.startswith("avc_session="))
    assert "secure" not in {part.strip().lower() for part in cookie.split(";")}
