"""The dashboard behind the separate-process gateway: every service its own `avcaption serve`
process over RabbitMQ, the browser at the gateway only."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from tests.e2e.harness import AMQP_URL, PASSWORD, Stack, amqp_problem, running_stack
from tests.support.videos import make_video

from .conftest import FAST_ENCODE, log_in
from .platform import drop_files, screenshot, watch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # In a thread of its own: Playwright's sync API may own this thread's event loop.
    with ThreadPoolExecutor(1) as pool:
        problem = pool.submit(amqp_problem, AMQP_URL).result()
    if problem is not None:
        pytest.skip(f"RabbitMQ does not answer at {AMQP_URL.split('@')[-1]} ({problem})")
    running = running_stack(tmp_path_factory.mktemp("dashboard-services"), extra_env=FAST_ENCODE)
    stack = running.__enter__()
    try:
        stack.start_services()
        stack.spawn("media-worker").wait_ready()  # the encoder is a process of its own here
        yield stack
    finally:
        # Stopped (and the bus objects deleted) from a thread of its own, for the same reason.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(running.__exit__, None, None, None).result()


def test_upload_and_play_through_the_separate_gateway(
    services: Stack, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    email = f"dash-{uuid.uuid4().hex[:10]}@example.com"
    services.admin(
        "create-account", "--email", email, "--plan", "enterprise", "--password-stdin",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    clip = make_video(tmp_path_factory.mktemp("clips") / "sep.mp4", seconds=2).read_bytes()
    context = browser.new_context(base_url=services.gateway.url)
    page = context.new_page()
    seen = watch(page)
    try:
        log_in(page, email, PASSWORD)
        drop_files(page, "#dropzone", [("separate.mp4", clip, 1_700_000_300_000)])
        row = page.locator("#uploads li.upload", has_text="separate.mp4")
        page.wait_for_function(
            "() => /uploaded|failed/.test(document.querySelector('#uploads .state').textContent)"
        )
        assert "uploaded" in row.locator(".state").inner_text(), row.inner_text()
        page.locator('#video-list tr[data-status="ready"]', has_text="separate").wait_for(
            timeout=120_000
        )
        page.locator("#video-list tr", has_text="separate").get_by_role("link").click()
        page.locator("video#video").wait_for()
        page.evaluate(
            "() => { const v = document.getElementById('video'); v.muted = true; v.play(); }"
        )
        page.wait_for_function(
            "() => document.getElementById('video').currentTime > 0.3", timeout=30_000
        )
        screenshot(page, "separate-gateway-video")
        page.goto("/dashboard/stats")
        assert page.locator("#total-videos").inner_text() == "1"
    finally:
        context.close()
    assert seen.outside() == []
    assert seen.csp_violations() == []
