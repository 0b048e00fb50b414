"""The dashboard in headless chromium against a real all-in-one platform: log in, API keys,
drag-and-drop upload (progress, resume after a reload), playback, webhooks, CSRF, /docs."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.harness import free_port
from tests.support.videos import make_video

from .conftest import Platform, Tab, log_in
from .platform import drop_files, screenshot

pytestmark = pytest.mark.slow

CHUNK = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_video(tmp_path_factory.mktemp("clips") / "clip.mp4", seconds=2).read_bytes()


@pytest.fixture(scope="module")
def big_clip(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A clip of four chunks (a bit over 15 MiB), so an upload can stop half-way."""
    path = tmp_path_factory.mktemp("clips") / "big.mp4"
    data = make_video(path, seconds=8, video_bitrate="18M").read_bytes()
    assert len(data) > 3 * CHUNK, len(data)
    return data


def curl_status(url: str, key: str) -> int:
    """The HTTP status of `curl -H "X-API-Key: key" url` (httpx when curl is absent)."""
    curl = shutil.which("curl")
    if curl is None:
        return httpx.get(url, headers={"X-API-Key": key}, timeout=10).status_code
    out = subprocess.run(
        [curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", f"X-API-Key: {key}", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(out.stdout)


def test_wrong_password_shows_the_message(platform: Platform, tab: Tab) -> None:
    email, _ = platform.account()
    page = tab.page
    page.goto("/")
    assert page.url.endswith("/dashboard/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password at all")
    page.get_by_role("button", name="Log in").click()
    alert = page.get_by_role("alert")
    alert.wait_for()
    assert "password" in alert.inner_text().lower()
    assert re.search(r"request id\s+\S+", alert.inner_text())
    screenshot(page, "login-wrong-password")
    assert all(c["name"] != "avc_session" for c in page.context.cookies())


def test_api_key_created_works_with_curl_then_revoked(platform: Platform, tab: Tab) -> None:
    email, password = platform.account()
    page = tab.page
    log_in(page, email, password)
    session = next(c for c in page.context.cookies() if c["name"] == "avc_session")
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"
    assert page.evaluate("() => document.cookie") == ""
    assert page.evaluate("() => Object.keys(localStorage)") == []

    page.get_by_role("link", name="Settings → API Keys").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_label("New API key").input_value()
    assert re.fullmatch(r"avc_[0-9a-f]{64}", key)
    assert "shown this once" in page.locator("#new-key").inner_text()
    screenshot(page, "api-keys-created")
    assert curl_status(f"{platform.url}/api/v1/videos", key) == 200

    page.goto("/dashboard/settings/api-keys")
    row = page.locator("#keys tbody tr", has_text="laptop")
    assert key[:8] in row.inner_text() or "avc_" in row.inner_text()
    row.get_by_role("link", name=re.compile("Revoke")).click()
    screenshot(page, "api-keys-revoke-confirm")
    page.get_by_role("button", name="Revoke key").click()
    page.wait_for_url("**/dashboard/settings/api-keys?revoked=1")
    assert page.locator("#keys tbody tr", has_text="laptop").count() == 0
    assert curl_status(f"{platform.url}/api/v1/videos", key) == 401


def test_drag_and_drop_upload_becomes_ready_and_plays(
    platform: Platform, tab: Tab, clip: bytes
) -> None:
    email, password = platform.account()
    page = tab.page
    log_in(page, email, password)
    page.evaluate("() => { window.notReloaded = true; }")
    # Two files in one drop: each gets its own row and progress.
    files = [("lesson-1.mp4", clip, 1_700_000_000_000), ("lesson-2.mp4", clip, 1_700_000_000_001)]
    drop_files(page, "#dropzone", files)
    page.locator("#uploads li.upload", has_text="lesson-2.mp4").locator(
        ".state", has_text="uploaded"
    ).wait_for()
    row = page.locator("#uploads li.upload", has_text="lesson-1.mp4")
    row.locator(".state", has_text="uploaded").wait_for()
    assert row.locator("progress").evaluate("p => p.value") == 100
    done, _, size = row.locator(".bytes").inner_text().partition(" of ")
    assert done == size, row.inner_text()
    assert row.locator(".speed").inner_text().endswith("/s")
    screenshot(page, "videos-uploaded")

    listed = page.locator("#video-list tr", has_text="lesson-1")
    listed.wait_for()
    page.locator("#video-list tr", has_text="lesson-2").wait_for()
    page.locator('#video-list tr[data-status="ready"]', has_text="lesson-1").wait_for(
        timeout=120_000
    )
    assert page.evaluate("() => window.notReloaded") is True  # followed without a reload
    assert listed.locator("img").count() == 1  # the thumbnail
    screenshot(page, "videos-ready")

    listed.get_by_role("link").click()
    video = page.locator("video#video")
    video.wait_for()
    page.evaluate(
        "() => { const v = document.getElementById('video'); v.muted = true; return v.play(); }"
    )
    page.wait_for_function(
        "() => document.getElementById('video').currentTime > 0.3", timeout=30_000
    )
    assert "lesson-1" in page.get_by_role("heading", level=1).inner_text()
    snippet = page.get_by_label("Embed snippet").input_value()
    assert "<iframe" in snippet
    screenshot(page, "video-page-playing")

    page.get_by_label("Title").fill("Lesson one")
    page.get_by_label("Allowed domains").fill("example.com\n*.example.org")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**saved=1")
    assert page.get_by_role("heading", level=1).inner_text() == "Lesson one"
    video_id = page.url.split("/dashboard/videos/")[1].split("?")[0]
    video = page.evaluate(f"() => avc.call('GET', 'videos/{video_id}')")
    assert video["title"] == "Lesson one"
    assert video["allowed_domains"] == ["example.com", "*.example.org"]


def _chunk_posts(platform: Platform) -> int:
    """Chunk uploads the server answered 200 to, from its access log."""
    return sum(
        1
        for record in platform.stack.gateway.records()
        if record.get("logger") == "uvicorn.access"
        and '"POST /dashboard/api/v1/upload/chunk HTTP/1.1" 200' in str(record.get("event"))
    )


def _chunk_posts_reach(platform: Platform, count: int) -> int:
    """Waits (up to 30 s) until the access log holds `count` chunk posts; returns how many it
    holds then. A request's access line is written just after its answer, so it may lag."""
    deadline = time.monotonic() + 30
    while (seen := _chunk_posts(platform)) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    return seen


def test_reload_mid_upload_resumes_without_resending_stored_chunks(
    platform: Platform, tab: Tab, big_clip: bytes
) -> None:
    email, password = platform.account()
    page = tab.page
    log_in(page, email, password)
    before = _chunk_posts(platform)
    total = -(-len(big_clip) // CHUNK)
    held: list[Any] = []

    def first_two_only(route: Any) -> None:
        index = int(route.request.headers["x-chunk-index"])
        if index < 2:
            route.continue_()
        else:
            held.append(route)  # cut off below, as a network failure would

    page.route("**/dashboard/api/v1/upload/chunk", first_two_only)
    answered: list[Any] = []
    page.on("requestfinished", lambda r: answered.append(r) if "/upload/chunk" in r.url else None)
    modified = 1_700_000_100_000
    drop_files(page, "#dropzone", [("big.mp4", big_clip, modified)])
    upload_id = _wait_for_stored(page, 2)
    # The page got both answers (else the reload would cut one off and the count be short).
    while len(answered) < 2:
        page.wait_for_timeout(50)
    assert held, "the page sent no chunk beyond the second"
    for route in held:
        route.abort("connectionreset")
    page.unroute("**/dashboard/api/v1/upload/chunk")
    page.reload()
    assert _chunk_posts_reach(platform, before + 2) - before == 2
    assert "unfinished upload" in page.locator("#uploads").inner_text()
    screenshot(page, "videos-resume-note")

    drop_files(page, "#dropzone", [("big.mp4", big_clip, modified)])
    row = page.locator("#uploads li.upload", has_text="big.mp4")
    row.locator(".state", has_text="uploaded").wait_for(timeout=60_000)
    # Only the missing chunks went up the second time.
    assert _chunk_posts_reach(platform, before + total) - before == total
    video_id = row.get_attribute("data-video-id")
    assert video_id
    status = page.evaluate(f"() => avc.call('GET', 'upload/{upload_id}')")
    assert status["video_id"] == video_id
    video = page.evaluate(f"() => avc.call('GET', 'videos/{video_id}')")
    assert video["sha256"] in (None, hashlib.sha256(big_clip).hexdigest())
    assert video["size_bytes"] == len(big_clip)


def _wait_for_stored(page: Any, count: int) -> str:
    """Waits until the server holds `count` chunks of the page's upload; returns its id."""
    page.wait_for_function("() => Object.keys(localStorage).some(k => k.startsWith('avc-upload:'))")
    upload_id: str = page.evaluate(
        "() => localStorage.getItem("
        "Object.keys(localStorage).find(k => k.startsWith('avc-upload:')))"
    )
    page.wait_for_function(
        """async ([id, count]) => {
            const s = await avc.call('GET', 'upload/' + id);
            return s.received.length >= count;
        }""",
        arg=[upload_id, count],
        polling=200,
    )
    return upload_id


class _Receiver(http.server.BaseHTTPRequestHandler):
    answers: list[int]
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        body = json.loads(self.rfile.read(length) or b"{}")
        self.received.append({"id": self.headers.get("webhook-id"), "body": body})
        status = self.answers[0] if self.answers else 200
        self.send_response(status)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"answers": [500], "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", handler
    finally:
        server.shutdown()
        server.server_close()


def _reload_until(page: Any, done: Callable[[], bool], *, tries: int = 120) -> None:
    """Reloads the page (as a user would) until `done()`, at most `tries` times 0.5 s apart."""
    url = page.url.split("?")[0]
    for _ in range(tries):
        if page.locator("#deliveries").count() and done():
            return
        page.wait_for_timeout(500)
        page.goto(url)


def test_webhook_delivery_shows_and_is_retried(
    platform: Platform, tab: Tab, clip: bytes, receiver: tuple[str, type[_Receiver]]
) -> None:
    url, handler = receiver
    email, password = platform.account()
    page = tab.page
    log_in(page, email, password)
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("URL").fill(url)
    page.get_by_label("video.uploaded").check()
    page.get_by_role("button", name="Add endpoint").click()
    secret = page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    screenshot(page, "webhooks-created")

    key = platform.api_key(email)
    uploaded = httpx.post(
        f"{platform.url}/api/v1/upload",
        headers={"X-API-Key": key},
        files={"file": ("hook.mp4", clip, "video/mp4")},
        timeout=60,
    )
    assert uploaded.status_code == 201, uploaded.text

    page.get_by_role("link", name=url).click()
    delivery = page.locator("#deliveries tbody tr")
    _reload_until(page, lambda: "HTTP 500" in (page.text_content("#deliveries") or ""))
    assert delivery.count() == 1, page.content()
    assert "video.uploaded" in delivery.first.inner_text()
    assert "HTTP 500" in delivery.first.inner_text()
    attempts = int(delivery.first.locator(".attempts").inner_text())
    screenshot(page, "webhook-deliveries")

    handler.answers.clear()  # the endpoint is fixed: 200 from now on
    got = len(handler.received)
    delivery.first.get_by_role("button", name=re.compile("Retry")).click()
    page.wait_for_url("**retried=1")
    _reload_until(page, lambda: delivery.first.get_attribute("data-status") == "succeeded")
    assert delivery.first.get_attribute("data-status") == "succeeded"
    assert int(delivery.first.locator(".attempts").inner_text()) > attempts
    assert len(handler.received) > got
    assert len({r["id"] for r in handler.received}) == 1  # the same event, sent again
    screenshot(page, "webhook-retried")

    page.get_by_label("Enabled").uncheck()
    page.get_by_label("video.encoded").check()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url("**saved=1")
    assert not page.get_by_label("Enabled").is_checked()
    webhook_id = page.url.split("/dashboard/webhooks/")[1].split("?")[0]
    endpoint = page.evaluate(f"() => avc.call('GET', 'webhooks/{webhook_id}')")
    assert endpoint["enabled"] is False
    assert sorted(endpoint["events"]) == ["video.encoded", "video.uploaded"]
    page.get_by_role("link", name="Delete endpoint").click()
    page.get_by_role("button", name="Delete webhook").click()
    page.wait_for_url("**/dashboard/webhooks?deleted=1")
    assert page.locator("#webhooks").count() == 0


def test_cross_site_form_post_without_csrf_token_is_refused(
    platform: Platform, tab: Tab, tmp_path: Path
) -> None:
    email, password = platform.account()
    page = tab.page
    log_in(page, email, password)
    attack = tmp_path / "attack.html"
    attack.write_text(
        "<!doctype html><title>win a prize</title>"
        f'<form id="f" method="post" action="{platform.url}/dashboard/settings/api-keys">'
        '<input name="name" value="stolen"></form>'
        "<script>document.getElementById('f').submit()</script>"
    )
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(  # noqa: E731
        *a, directory=str(tmp_path), **k
    )
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with page.expect_navigation(url=f"{platform.url}/dashboard/settings/api-keys") as nav:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/attack.html")
        response = nav.value
        assert response is not None
        assert response.status == 403
        assert "CSRF token" in page.get_by_role("alert").inner_text()
        screenshot(page, "csrf-refused")
    finally:
        server.shutdown()
        server.server_close()
    page.goto("/dashboard/settings/api-keys")
    assert "stolen" not in page.content()


def test_docs_render_with_no_network_beyond_loopback(platform: Platform, tab: Tab) -> None:
    page = tab.page
    page.goto("/docs")
    page.locator(".swagger-ui .information-container").wait_for()
    page.locator(".swagger-ui .opblock").first.wait_for()
    assert "AVCaption API" in page.locator(".swagger-ui .title").inner_text()
    screenshot(page, "docs")
    assert tab.seen.outside() == []
    assert any(u.endswith("/api/v1/openapi.json") for u in tab.seen.urls)


def test_cancel_stops_the_upload_and_aborts_it_on_the_server(
    platform: Platform, tab: Tab, big_clip: bytes
) -> None:
    email, password = platform.account()
    page = tab.page
    log_in(page, email, password)
    held: list[Any] = []
    page.route("**/dashboard/api/v1/upload/chunk", lambda route: held.append(route))  # held
    drop_files(page, "#dropzone", [("cancel.mp4", big_clip, 1_700_000_200_000)])
    page.wait_for_function("() => Object.keys(localStorage).length === 1")
    upload_id = page.evaluate("() => localStorage.getItem(Object.keys(localStorage)[0])")
    row = page.locator("#uploads li.upload", has_text="cancel.mp4")
    row.get_by_role("button", name="Cancel").click()
    row.locator(".state", has_text="cancelled").wait_for()
    page.wait_for_function("() => Object.keys(localStorage).length === 0")
    for route in held:
        route.abort()
    page.unroute("**/dashboard/api/v1/upload/chunk")
    page.wait_for_function(
        """async id => {
            try { await avc.call('GET', 'upload/' + id); return false; }
            catch (e) { return e.status === 404; }
        }""",
        arg=upload_id,
        polling=200,
    )
