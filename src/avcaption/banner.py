"""What `serve` says once everything is ready: where the dashboard and the API reference are,
and how to make the first account. A banner on a terminal, one `ready` log record otherwise."""

from __future__ import annotations

import shlex
import sys
from contextlib import suppress
from pathlib import Path
from typing import Final, TextIO

from avc_common.logging import get_logger

# Targets that serve the dashboard and /docs (the gateway, alone or with everything).
_PUBLIC_TARGETS: Final = frozenset({"all", "gateway"})
_ANY_ADDRESS: Final = frozenset({"", "0.0.0.0", "::", "[::]"})


def public_url(host: str, port: int) -> str:
    """Returns the URL a browser on this machine uses for a server listening on host:port."""
    shown = "localhost" if host in _ANY_ADDRESS else host
    if ":" in shown and not shown.startswith("["):
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def admin_command(data_dir: Path | None) -> str:
    """Returns the command that creates the first account, as this process was started (and
    with the data dir when it came from `--data-dir`: the admin command must find it too)."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is None or program.name != "avcaption":
        shown = "avcaption"  # e.g. `python -m avcaption`
    else:
        with suppress(ValueError):  # .venv/bin/avcaption, as `make run` starts it
            program = program.relative_to(Path.cwd())
        shown = str(program)
    prefix = f"AVC_DATA_DIR={shlex.quote(str(data_dir))} " if data_dir is not None else ""
    return (
        f"{prefix}{shlex.quote(shown)} admin create-account "
        "--email you@example.com --plan enterprise"
    )


def announce_ready(
    *,
    target: str,
    host: str,
    port: int,
    data_dir: Path | None,
    human: bool,
    stream: TextIO | None = None,
) -> None:
    """Says the component is ready: the banner when `human`, else one `ready` log record."""
    url = public_url(host, port)
    if target not in _PUBLIC_TARGETS:
        get_logger("avcaption.cli").info("ready", target=target, url=url)
        return
    docs = url + "docs"
    command = admin_command(data_dir)
    if not human:
        get_logger("avcaption.cli").info(
            "ready", target=target, dashboard_url=url, docs_url=docs, first_account=command
        )
        return
    out = stream or sys.stdout
    out.write(
        "\n"
        "  AVCaption is ready\n"
        "\n"
        f"    Dashboard      {url}\n"
        f"    API reference  {docs}\n"
        "\n"
        "    First account (in another terminal, it asks for a password):\n"
        f"      {command}\n"
        "\n"
    )
    out.flush()
