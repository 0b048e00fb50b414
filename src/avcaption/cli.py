"""The `avcaption` command: `version`, `serve` and `admin …`."""

from __future__ import annotations

from pathlib import Path
from secrets import token_hex
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError
from rich.console import Console

from avcaption import __version__
from avcaption.admin import admin
from avcaption.components import ALL, COMPONENTS

app = typer.Typer(
    name="avcaption",
    help="AVCaption: a self-hostable video platform API.",
    no_args_is_help=True,
    add_completion=False,
    # Locals of a crashed server can hold secrets (URLs with passwords).
    pretty_exceptions_show_locals=False,
)
app.add_typer(admin, name="admin")
console = Console()


@app.command()
def version() -> None:
    """Print the installed version."""
    console.print(f"avcaption {__version__}", highlight=False)


def _settings_problems(exc: ValidationError) -> str:
    problems = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
    )
    return f"invalid settings: {problems}"


def _check_target(value: str) -> str:
    if value not in COMPONENTS:
        choices = ", ".join(COMPONENTS)
        raise typer.BadParameter(f"unknown target {value!r}; choose one of: {choices}.")
    return value


@app.command()
def serve(
    target: Annotated[
        str,
        typer.Option(
            envvar="AVC_TARGET",
            callback=_check_target,
            help=f"What to run: {', '.join(COMPONENTS)}.",
        ),
    ] = ALL,
    host: Annotated[
        str | None,
        typer.Option(help="Address to listen on. (env AVC_HOST, default 0.0.0.0)"),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Port to listen on. (env AVC_PORT, default 8080)"),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            file_okay=False,
            help="Where embedded databases and objects live; created if missing.  "
            "(env AVC_DATA_DIR, default ./data)",
        ),
    ] = None,
) -> None:
    """Run a component (or every component in one process) until SIGINT/SIGTERM."""
    # Imported here: `avcaption version` and `--help` need none of the server stack.
    from avc_common.config import Settings
    from avc_common.logging import configure_logging, get_logger, json_logs_wanted
    from avcaption.banner import announce_ready
    from avcaption.http_protocol import ConnectionLimits
    from avcaption.server import serve as run_server

    overrides: dict[str, Any] = {"host": host, "port": port, "data_dir": data_dir}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        raise typer.BadParameter(_settings_problems(exc)) from None

    if settings.metrics_port == settings.port:
        raise typer.BadParameter(
            f"invalid settings: AVC_METRICS_PORT must differ from the port ({settings.port})"
        )

    if not settings.internal_secret_value:
        if target != ALL:
            raise typer.BadParameter(
                "AVC_INTERNAL_SECRET must be set (the same value for every component) when "
                "components run as separate processes."
            )
        # One process: nothing outside it needs to verify the tokens, so a fresh secret will do.
        settings = settings.model_copy(update={"internal_secret": SecretStr(token_hex(32))})

    # Readable lines on a terminal, JSON otherwise; AVC_LOG_JSON (when given) decides.
    forced = settings.log_json if "log_json" in settings.model_fields_set else None
    json_logs = json_logs_wanted(forced)
    try:
        configure_logging(service=target, level=settings.log_level, json=json_logs)
    except ValueError as exc:
        raise typer.BadParameter(f"invalid settings: AVC_LOG_LEVEL: {exc}") from None

    data = settings.resolved_data_dir
    try:
        data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot create {data}: {exc.strerror}", param_hint="--data-dir"
        ) from None
    log = get_logger("avcaption.cli")
    log.info("serve", target=target, host=settings.host, port=settings.port, data_dir=str(data))
    try:
        # Components read their own settings classes too (e.g. the gateway's secrets).
        component = COMPONENTS[target].create(settings)
    except ValidationError as exc:
        raise typer.BadParameter(_settings_problems(exc)) from None
    limits = ConnectionLimits(
        max_head_bytes=settings.max_request_head_bytes,
        header_timeout=settings.header_read_timeout,
        body_timeout=settings.body_read_timeout,
        body_min_rate=settings.body_min_rate,
        max_connections=settings.max_connections,
    )
    run_server(
        component,
        host=settings.host,
        port=settings.port,
        access_log=settings.access_log,
        limits=limits,
        metrics_port=settings.metrics_port,
        on_ready=lambda: announce_ready(
            target=target,
            host=settings.host,
            port=settings.port,
            data_dir=data if data_dir is not None else None,
            human=not json_logs,
        ),
    )
    log.info("stopped", target=target)


def main() -> None:
    """Entry point of the `avcaption` console script."""
    app()
