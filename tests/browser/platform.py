"""Helpers of the browser tests: the platform process, the browser, pages, artifacts, axe."""

from __future__ import annotations

import base64
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

REPO: Final = Path(__file__).resolve().parents[2]
ARTIFACTS: Final = REPO / "test-artifacts" / "browser"
AXE: Final = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK: Final = frozenset({"127.0.0.1", "localhost", "[::1]", "::1"})


def chromium_path() -> str | None:
    """Returns Debian's chromium (or another on PATH), None when there is none."""
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class Watch:
    """What one page asked for and complained about."""

    urls: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)

    def outside(self) -> list[str]:
        """Requests to any host but loopback (data:/blob: and the like have none)."""
        return [
            u
            for u in self.urls
            if urlsplit(u).scheme in ("http", "https", "ws", "wss")
            and urlsplit(u).hostname not in LOOPBACK
        ]

    def csp_violations(self) -> list[str]:
        return [m for m in self.console_errors if "Content Security Policy" in m]


def watch(page: Any) -> Watch:
    seen = Watch()
    page.on("request", lambda request: seen.urls.append(request.url))
    page.on(
        "console",
        lambda message: (
            seen.console_errors.append(message.text) if message.type == "error" else None
        ),
    )
    return seen


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{re.sub(r'[^a-z0-9-]+', '-', name.lower())}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def axe_violations(page: Any, name: str) -> list[dict[str, Any]]:
    """Runs axe-core in the page (through the debugger, so the page's CSP stays as it is);
    returns the serious and critical violations, all of them written as an artifact."""
    page.evaluate("source => { (0, eval)(source); }", AXE.read_text())
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {
                runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']},
            });
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
        }"""
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"axe-{name}.json").write_text(json.dumps(result, indent=2))
    return [v for v in result if v["impact"] in ("serious", "critical")]


def drop_files(page: Any, selector: str, files: list[tuple[str, bytes, int]]) -> None:
    """Drops files (name, bytes, lastModified) on `selector` as a user dragging them would."""
    handle = page.evaluate_handle(
        """files => {
            const transfer = new DataTransfer();
            for (const [name, b64, modified] of files) {
                const raw = atob(b64);
                const bytes = new Uint8Array(raw.length);
                for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
                const options = {type: 'video/mp4', lastModified: modified};
                transfer.items.add(new File([bytes], name, options));
            }
            return transfer;
        }""",
        [[name, _b64(data), modified] for name, data, modified in files],
    )
    try:
        for event in ("dragenter", "dragover", "drop"):
            page.dispatch_event(selector, event, {"dataTransfer": handle})
    finally:
        handle.dispose()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
