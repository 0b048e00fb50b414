"""Fixtures of the browser tests: one real `avcaption serve --target all` process (temp data
dir, free port, in-process bus) and headless Debian chromium driven by Playwright.

Skipped, with the reason, when no chromium is installed (`.ci/run` installs it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from tests.e2e.harness import PASSWORD, Stack, running_stack

from .platform import CHROMIUM_ARGS, Watch, chromium_path, screenshot, watch

pytestmark = pytest.mark.slow

# Small clips, one rendition, the fastest x264 preset: the tests need "ready", not quality.
FAST_ENCODE = {"AVC_MEDIA_X264_PRESET": "ultrafast", "AVC_MEDIA_LADDER": "360"}


@dataclass(frozen=True)
class Platform:
    stack: Stack
    url: str

    def account(self, *, plan: str = "enterprise") -> tuple[str, str]:
        """Creates an account; returns (email, password)."""
        email = f"dash-{uuid.uuid4().hex[:10]}@example.com"
        args = ["create-account", "--email", email, "--plan", plan, "--password-stdin"]
        self.stack.admin(*args, stdin=PASSWORD + "\n")
        return email, PASSWORD

    def api_key(self, email: str) -> str:
        return self.stack.admin("create-api-key", "--email", email, "--name", "tests").strip()


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium installed (apt-get install -y chromium; .ci/run does it)")
    return path


@pytest.fixture(scope="session")
def platform(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("dashboard")
    with running_stack(root, bus_url="memory://", extra_env=FAST_ENCODE) as stack:
        component = stack.start_all_in_one()
        yield Platform(stack, component.url)


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:
    """Per module, not per session: Playwright's sync API holds an event loop in this thread
    while it runs, which the async tests of later directories cannot share."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@dataclass
class Tab:
    page: Any
    seen: Watch


@pytest.fixture
def tab(browser: Any, platform: Platform, request: pytest.FixtureRequest) -> Iterator[Tab]:
    """A fresh browser context on the platform; fails the test if any page asked for an
    outside host or broke the CSP, and keeps a screenshot of where a failing test stopped."""
    context = browser.new_context(base_url=platform.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = watch(page)
    yield Tab(page, seen)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        screenshot(page, f"failed-{request.node.name}")
    context.close()
    assert seen.outside() == [], seen.outside()
    assert seen.csp_violations() == [], seen.csp_violations()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def log_in(page: Any, email: str, password: str) -> None:
    page.goto("/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/dashboard/videos")
