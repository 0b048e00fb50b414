"""The `avc` commands. Connection options go before the command (`avc --api-url URL upload …`);
`--json` after it, on every command."""

from __future__ import annotations

import asyncio
import getpass
import os
import sys
from collections.abc import Callable, Coroutine
from contextlib import suppress
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape

from .. import __version__
from .._http import RetryEvent
from ..async_client import AsyncClient
from ..errors import ApiError, AvcError
from ..models import Video
from ..uploads import DEFAULT_PARALLEL, UploadResult, check_source
from . import config
from .output import err, fail, fields, print_json, table

T = TypeVar("T")

app = typer.Typer(
    name="avc",
    help="AVCaption from the command line: upload, migrate, manage videos and webhooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
videos_app = typer.Typer(help="List, show, change and delete videos.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhook endpoints and their deliveries.", no_args_is_help=True)
app.add_typer(videos_app, name="videos")
app.add_typer(webhooks_app, name="webhooks")

Json = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]
Parallel = Annotated[
    int, typer.Option("--parallel", "-p", min=1, max=32, help="Chunks in flight per file.")
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"avc {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="API key (else AVC_API_KEY, else the profile).")
    ] = None,
    api_url: Annotated[
        str | None,
        typer.Option("--api-url", help="API base URL (else AVC_API_URL, else the profile)."),
    ] = None,
    profile: Annotated[
        str, typer.Option("--profile", envvar="AVC_PROFILE", help="Profile of the config file.")
    ] = "default",
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = config.resolve(api_key, api_url, profile)


def _connection(ctx: typer.Context) -> config.Connection:
    conn = ctx.find_root().obj
    assert isinstance(conn, config.Connection)
    return conn


def _announce_retry(event: RetryEvent) -> None:
    reason = event.error.code if isinstance(event.error, ApiError) else type(event.error).__name__
    err.print(
        f"[dim]{escape(event.method)} {escape(event.path)}: {escape(reason)}, "
        f"retrying in {event.delay:.1f} s (attempt {event.attempt})[/]"
    )


def _run(
    ctx: typer.Context,
    as_json: bool,
    action: Callable[[AsyncClient], Coroutine[Any, Any, T]],
    *,
    need_key: bool = True,
) -> T:
    """Runs `action` with a client; prints API and connection errors with their code and
    request id and exits non-zero on them."""
    conn = _connection(ctx)
    if need_key and not conn.api_key:
        fail(
            AvcError("no API key: set AVC_API_KEY, pass --api-key or run `avc login`"),
            as_json=as_json,
            exit_code=2,
        )

    async def go() -> T:
        async with AsyncClient(
            conn.api_key, api_url=conn.api_url, on_retry=None if as_json else _announce_retry
        ) as client:
            return await action(client)

    try:
        return asyncio.run(go())
    except (AvcError, OSError, ValueError, TimeoutError) as exc:
        fail(exc, as_json=as_json)


# -- login ---------------------------------------------------------------------------------


@app.command()
def login(
    ctx: typer.Context,
    email: Annotated[
        str | None, typer.Option("--email", help="Trade email + password for a new key.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
    key_name: Annotated[
        str, typer.Option("--key-name", help="Name of the key created for this machine.")
    ] = "avc cli",
    as_json: Json = False,
) -> None:
    """Store an API key (from --api-key / AVC_API_KEY, or a prompt) in the profile file, or
    log in with --email and create a key for this machine."""
    conn = _connection(ctx)
    if email is None and not conn.api_key:
        conn.api_key = getpass.getpass("API key: ").strip()
    if email is not None:
        password = (
            sys.stdin.readline().rstrip("\n") if password_stdin else getpass.getpass("Password: ")
        )

        async def trade(client: AsyncClient) -> str:
            token = await client.login(email, password)
            client.use_token(token.access_token)
            created = await client.create_api_key(key_name)
            return created.key

        conn.api_key = _run(ctx, as_json, trade, need_key=False)

    async def whoami(client: AsyncClient) -> Any:
        return await client.get_account()

    checker = config.Connection(conn.api_url, conn.api_key, conn.profile)
    ctx.find_root().obj = checker
    account = _run(ctx, as_json, whoami)
    assert conn.api_key is not None
    path = config.save_profile(conn.profile, {"api_url": conn.api_url, "api_key": conn.api_key})
    if as_json:
        print_json({"profile": conn.profile, "config": str(path), "account": account})
    else:
        err.print(
            f"logged in as [bold]{escape(account.email)}[/] ({escape(account.plan)}); "
            f"profile [bold]{escape(conn.profile)}[/] saved in {escape(str(path))}"
        )


# -- upload, wait, migrate -----------------------------------------------------------------


def _result_row(result: UploadResult, video: Video | None) -> list[Any]:
    how = "chunked" if result.chunked else "direct"
    if result.resumed:
        how += f", resumed ({result.chunks_sent} chunks sent)"
    if result.seconds > 0:
        how += f", {result.size / 1e6 / result.seconds:.1f} MB/s"
    return [result.path.name, result.video_id, video.status if video else result.status, how]


@app.command()
def upload(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="Files to upload.", exists=True)],
    parallel: Parallel = DEFAULT_PARALLEL,
    title: Annotated[
        str | None, typer.Option("--title", help="Title (one file only; else the file name).")
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Wait until each video is ready or failed.")
    ] = False,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=16, help="Files at once.")
    ] = 1,
    max_rate: Annotated[
        float | None, typer.Option("--max-rate", min=0.01, help="Cap in MB/s (all files).")
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option("--state-dir", help="Keep resume state here, not beside files.")
    ] = None,
    no_resume: Annotated[
        bool, typer.Option("--no-resume", help="Start over even if an earlier run stopped.")
    ] = False,
    no_checksum: Annotated[
        bool,
        typer.Option("--no-checksum", help="Leave out each chunk's SHA-256 (saves CPU)."),
    ] = False,
    as_json: Json = False,
) -> None:
    """Upload files (large ones chunked, resumable: run the same command again after an
    interruption) with progress bars."""
    from .progress import UploadDisplay

    if title is not None and len(files) > 1:
        fail(ValueError("--title needs exactly one file"), as_json=as_json, exit_code=2)
    sizes = {}
    for path in files:
        try:
            sizes[path] = check_source(path)
        except (OSError, ValueError) as exc:
            fail(exc, as_json=as_json)
    rate = max_rate * 1e6 / concurrency if max_rate else None

    async def action(client: AsyncClient) -> list[tuple[UploadResult, Video | None]]:
        limit = asyncio.Semaphore(concurrency)
        display = UploadDisplay(sum(sizes.values()), len(files), enabled=not as_json)

        async def one(path: Path) -> tuple[UploadResult, Video | None]:
            async with limit:
                display.add_file(path, sizes[path])
                result = await client.upload(
                    path,
                    title=title,
                    parallel=parallel,
                    progress=display.callback(path),
                    state_dir=state_dir,
                    resume=not no_resume,
                    max_rate=rate,
                    checksum=not no_checksum,
                )
                display.finish_file(path, "[green]done[/]")
            video = await client.wait_for_video(result.video_id) if wait else None
            return result, video

        with display:
            return list(await asyncio.gather(*(one(p) for p in files)))

    results = _run(ctx, as_json, action)
    if as_json:
        print_json([{**asdict(r), "video": v} for r, v in results])
    else:
        table(None, ["file", "video", "status", "upload"], [_result_row(r, v) for r, v in results])
    if any(v is not None and v.status == "failed" for _, v in results):
        raise typer.Exit(1)


@app.command("wait")
def wait_command(
    ctx: typer.Context,
    video_id: Annotated[str, typer.Argument(help="The video to wait for.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after (seconds).")] = 3600,
    as_json: Json = False,
) -> None:
    """Wait until a video is ready (exit 0) or failed (exit 1)."""

    async def action(client: AsyncClient) -> Video:
        return await client.wait_for_video(video_id, timeout=timeout)

    video = _run(ctx, as_json, action)
    _show_video(video, as_json)
    if video.status == "failed":
        raise typer.Exit(1)


@app.command()
def migrate(
    ctx: typer.Context,
    source: Annotated[
        Path, typer.Argument(help="A folder (recursively) or a CSV with path[,title].", exists=True)
    ],
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, max=16, help="Files at once.")
    ] = 3,
    parallel: Parallel = DEFAULT_PARALLEL,
    manifest: Annotated[
        Path | None, typer.Option("--manifest", help="JSONL manifest (default: in the folder).")
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Wait for processing (a failed video is a failure)."),
    ] = True,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Upload again files whose video failed.")
    ] = False,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", help="Per video, seconds.")
    ] = 3600,
    as_json: Json = False,
) -> None:
    """Upload a whole library; a re-run skips what is done (manifest and SHA-256) and the
    exit code is 1 when any file failed."""
    from .migrate import Migration, collect, summary
    from .progress import UploadDisplay

    try:
        items, default_manifest = collect(source)
    except (OSError, ValueError) as exc:
        fail(exc, as_json=as_json)
    manifest_path = manifest or default_manifest
    total = 0
    for item in items:
        with suppress(OSError):
            total += item.path.stat().st_size

    async def action(client: AsyncClient) -> list[Any]:
        display = UploadDisplay(total, len(items), enabled=not as_json)
        with display:
            migration = Migration(
                client,
                items,
                manifest_path,
                concurrency=concurrency,
                parallel=parallel,
                wait=wait,
                retry_failed=retry_failed,
                wait_timeout=wait_timeout,
                display=display,
            )
            return await migration.run()

    outcomes = _run(ctx, as_json, action)
    counts = summary(outcomes)
    if as_json:
        print_json({"manifest": str(manifest_path), "summary": counts, "files": outcomes})
    else:
        rows = [
            [
                Path(o.path).name,
                "[green]ok[/]" if o.ok else "[red]failed[/]",
                o.result,
                o.video_id,
                f"{o.detail or ''}{f' ({o.code})' if o.code and not o.ok else ''}",
            ]
            for o in outcomes
        ]
        table("migration", ["file", "", "result", "video", "detail"], rows)
        err.print(
            f"summary: [bold]{counts['ok']} ok[/] ({counts['uploaded']} uploaded, "
            f"{counts['skipped']} already there) / [bold]{counts['failed']} failed[/]; "
            f"manifest {escape(str(manifest_path))}"
        )
    if counts["failed"]:
        raise typer.Exit(1)


# -- videos --------------------------------------------------------------------------------

VIDEO_FIELDS = [
    "id",
    "title",
    "status",
    "filename",
    "size_bytes",
    "sha256",
    "duration_seconds",
    "width",
    "height",
    "visibility",
    "allowed_domains",
    "embed_url",
    "hls_url",
    "error",
    "created_at",
]


def _show_video(video: Video, as_json: bool) -> None:
    if as_json:
        print_json(video)
    else:
        fields(video, VIDEO_FIELDS)


@videos_app.command("list")
def videos_list(
    ctx: typer.Context,
    page: Annotated[int, typer.Option("--page", min=1)] = 1,
    per_page: Annotated[int, typer.Option("--per-page", min=1, max=100)] = 20,
    as_json: Json = False,
) -> None:
    """List videos, newest first."""

    async def action(client: AsyncClient) -> Any:
        return await client.list_videos(page, per_page)

    result = _run(ctx, as_json, action)
    if as_json:
        print_json(result)
        return
    rows = [[v.id, v.title, v.status, _mb(v.size_bytes), v.created_at] for v in result.data]
    table(
        f"videos (page {result.page} of {result.total_pages}, {result.total} in all)",
        ["id", "title", "status", "size", "created"],
        rows,
    )


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


@videos_app.command("get")
def videos_get(ctx: typer.Context, video_id: str, as_json: Json = False) -> None:
    """Show one video."""

    async def action(client: AsyncClient) -> Video:
        return await client.get_video(video_id)

    _show_video(_run(ctx, as_json, action), as_json)


@videos_app.command("update")
def videos_update(
    ctx: typer.Context,
    video_id: str,
    title: Annotated[str | None, typer.Option("--title")] = None,
    visibility: Annotated[
        str | None, typer.Option("--visibility", help="public or private")
    ] = None,
    allowed_domain: Annotated[
        list[str] | None,
        typer.Option("--allowed-domain", help="Repeat for several; replaces the list."),
    ] = None,
    any_domain: Annotated[
        bool, typer.Option("--any-domain", help="Clear allowed domains (embed anywhere).")
    ] = False,
    preset: Annotated[str | None, typer.Option("--preset", help="Player preset id.")] = None,
    as_json: Json = False,
) -> None:
    """Change a video's title, visibility, allowed domains or preset."""
    domains = [] if any_domain else allowed_domain

    async def action(client: AsyncClient) -> Video:
        return await client.update_video(
            video_id, title=title, visibility=visibility, allowed_domains=domains, preset_id=preset
        )

    _show_video(_run(ctx, as_json, action), as_json)


@videos_app.command("delete")
def videos_delete(
    ctx: typer.Context,
    video_id: str,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    as_json: Json = False,
) -> None:
    """Delete a video and its files."""
    if not yes and not as_json and sys.stdin.isatty():
        typer.confirm(f"delete {video_id}?", abort=True)

    async def action(client: AsyncClient) -> None:
        await client.delete_video(video_id)

    _run(ctx, as_json, action)
    if as_json:
        print_json({"deleted": video_id})
    else:
        err.print(f"deleted {escape(video_id)}")


# -- webhooks ------------------------------------------------------------------------------


@webhooks_app.command("list")
def webhooks_list(
    ctx: typer.Context,
    page: Annotated[int, typer.Option("--page", min=1)] = 1,
    as_json: Json = False,
) -> None:
    """List webhook endpoints."""

    async def action(client: AsyncClient) -> Any:
        return await client.list_webhooks(page, 100)

    result = _run(ctx, as_json, action)
    if as_json:
        print_json(result)
        return
    rows = [
        [w.id, w.url, ",".join(w.events), "yes" if w.enabled else f"no ({w.disabled_reason})"]
        for w in result.data
    ]
    table("webhooks", ["id", "url", "events", "enabled"], rows)


@webhooks_app.command("create")
def webhooks_create(
    ctx: typer.Context,
    url: str,
    event: Annotated[
        list[str] | None, typer.Option("--event", "-e", help="Repeat; all events if left out.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description")] = None,
    as_json: Json = False,
) -> None:
    """Create an endpoint; prints its signing secret (shown this once)."""

    async def action(client: AsyncClient) -> Any:
        return await client.create_webhook(url, events=event or None, description=description)

    created = _run(ctx, as_json, action)
    if as_json:
        print_json(created)
    else:
        fields(created, ["id", "url", "events", "enabled", "secret", "created_at"])
        err.print("[yellow]the secret is shown this once: store it now[/]")


@webhooks_app.command("delete")
def webhooks_delete(ctx: typer.Context, webhook_id: str, as_json: Json = False) -> None:
    """Delete an endpoint."""

    async def action(client: AsyncClient) -> None:
        await client.delete_webhook(webhook_id)

    _run(ctx, as_json, action)
    if as_json:
        print_json({"deleted": webhook_id})
    else:
        err.print(f"deleted {escape(webhook_id)}")


@webhooks_app.command("deliveries")
def webhooks_deliveries(
    ctx: typer.Context,
    webhook_id: str,
    page: Annotated[int, typer.Option("--page", min=1)] = 1,
    as_json: Json = False,
) -> None:
    """The delivery attempts of an endpoint, newest first."""

    async def action(client: AsyncClient) -> Any:
        return await client.list_deliveries(webhook_id, page, 50)

    result = _run(ctx, as_json, action)
    if as_json:
        print_json(result)
        return
    rows = [
        [d.id, d.event_type, d.status, d.attempts, d.last_status_code, d.next_attempt_at]
        for d in result.data
    ]
    table("deliveries", ["id", "event", "status", "attempts", "last code", "next attempt"], rows)


@webhooks_app.command("retry")
def webhooks_retry(ctx: typer.Context, delivery_id: str, as_json: Json = False) -> None:
    """Send a delivery again now."""

    async def action(client: AsyncClient) -> Any:
        return await client.retry_delivery(delivery_id)

    delivery = _run(ctx, as_json, action)
    if as_json:
        print_json(delivery)
    else:
        fields(delivery, ["id", "event_type", "status", "attempts", "last_status_code"])


# -- stats ---------------------------------------------------------------------------------


@app.command()
def stats(ctx: typer.Context, as_json: Json = False) -> None:
    """Account totals: videos, views, storage."""

    async def action(client: AsyncClient) -> Any:
        return await client.get_stats()

    result = _run(ctx, as_json, action)
    if as_json:
        print_json(result)
        return
    by = result.videos_by_status
    table(
        "stats",
        ["videos", "ready", "processing", "failed", "views", "storage"],
        [
            [
                result.total_videos,
                by.ready,
                by.processing,
                by.failed,
                result.total_views,
                _mb(result.storage_used_bytes),
            ]
        ],
    )


def main() -> None:
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            err.print(exc.code)
    # Everything is written and every thread joined by now: skip tearing down the interpreter
    # (freeing every module httpx, pydantic, typer and rich loaded takes ~0.3 s of CPU).
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
