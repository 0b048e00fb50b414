"""Every dashboard page in headless chromium: axe-core finds no serious or critical WCAG 2.1
A/AA violation, the page fits a narrow (phone) screen, and a screenshot of each is kept under
test-artifacts/browser/."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from tests.support.videos import make_video

from .conftest import Platform, Tab, log_in
from .platform import axe_violations, screenshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ready_account(
    platform: Platform, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, str]:
    """An account with one ready video and one webhook endpoint: (email, password, video id)."""
    email, password = platform.account()
    key = platform.api_key(email)
    headers = {"X-API-Key": key}
    clip = make_video(tmp_path_factory.mktemp("a11y") / "a11y.mp4", seconds=2).read_bytes()
    with httpx.Client(base_url=platform.url, headers=headers, timeout=60) as client:
        made = client.post("/api/v1/upload", files={"file": ("a11y.mp4", clip, "video/mp4")})
        assert made.status_code == 201, made.text
        video_id = made.json()["video_id"]
        hook = client.post("/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hooks"})
        assert hook.status_code == 201, hook.text
        deadline = time.monotonic() + 120
        while client.get(f"/api/v1/videos/{video_id}").json()["status"] == "processing":
            assert time.monotonic() < deadline, "the video did not finish processing"
            time.sleep(0.5)
    return email, password, video_id


def check(page: Any, name: str) -> None:
    page.wait_for_load_state("networkidle")
    serious = axe_violations(page, name)
    assert serious == [], (name, serious)
    screenshot(page, name)
    page.set_viewport_size({"width": 375, "height": 800})
    overflow = page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name} is wider than a 375 px screen by {overflow} px"
    screenshot(page, f"{name}-narrow")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_every_page_passes_axe_and_fits_a_narrow_screen(
    platform: Platform, tab: Tab, ready_account: tuple[str, str, str]
) -> None:
    email, password, video_id = ready_account
    page = tab.page
    page.goto("/dashboard/login")
    check(page, "login")
    log_in(page, email, password)
    check(page, "videos")
    page.goto(f"/dashboard/videos/{video_id}")
    page.locator("video#video").wait_for()
    check(page, "video")
    page.goto(f"/dashboard/videos/{video_id}/delete")
    check(page, "video-delete-confirm")
    page.goto("/dashboard/settings/api-keys")
    check(page, "api-keys")
    page.goto("/dashboard/webhooks")
    check(page, "webhooks")
    page.locator("#webhooks a").first.click()
    page.wait_for_url("**/dashboard/webhooks/whk_*")
    check(page, "webhook")
    page.goto("/dashboard/stats")
    assert page.locator("#total-videos").inner_text() == "1"
    check(page, "stats")
    page.goto("/dashboard/videos/vid_doesnotexist")
    assert "request id" in page.get_by_role("alert").inner_text()
    check(page, "error")


def test_keyboard_alone_reaches_the_upload_and_every_menu_entry(
    platform: Platform, tab: Tab, ready_account: tuple[str, str, str]
) -> None:
    email, password, _ = ready_account
    page = tab.page
    log_in(page, email, password)
    reached: list[str] = []
    for _ in range(30):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "() => { const e = document.activeElement;"
                " return (e.id || e.textContent || e.tagName).trim(); }"
            )
        )
    for target in ("Skip to content", "Videos", "Webhooks", "Stats", "Log out", "file-input"):
        assert target in reached, (target, reached)
    # The focused element is visibly outlined (the dashboard's :focus-visible style).
    page.get_by_role("link", name="Webhooks").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    outline = page.evaluate("() => getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    # The hidden file input shows its focus on the visible "Choose files" label.
    page.locator("#file-input").focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    label = page.evaluate(
        "() => getComputedStyle(document.querySelector('label[for=file-input]')).outlineStyle"
    )
    assert label == "solid"
