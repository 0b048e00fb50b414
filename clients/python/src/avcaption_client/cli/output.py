"""How `avc` prints: rich tables for people, `--json` for scripts, errors with their code and
request id on stderr (and as JSON on stdout with `--json`)."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import ApiError, AvcError

# Piped into a file or a pager, tables keep their ids whole instead of 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def plain(value: Any) -> Any:
    """Models (and lists of them) as JSON-ready values."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(plain(value), indent=2, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    grid = Table(title=title, show_lines=False)
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*("" if v is None else str(v) for v in row))
    out.print(grid)


def fields(value: BaseModel, names: Sequence[str] | None = None) -> None:
    """One object as `name: value` lines."""
    data = value.model_dump(mode="json")
    grid = Table(show_header=False, box=None)
    grid.add_column(style="bold")
    grid.add_column()
    for name in names or list(data):
        shown = data.get(name)
        if isinstance(shown, list | dict):
            shown = json.dumps(shown)
        grid.add_row(name, "" if shown is None else str(shown))
    out.print(grid)


def error_payload(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ApiError):
        payload: dict[str, Any] = {
            "error": exc.message,
            "code": exc.code,
            "status": exc.status,
            "request_id": exc.request_id,
        }
        if exc.details:
            payload["details"] = exc.details
        return payload
    return {"error": str(exc), "code": type(exc).__name__, "status": None, "request_id": None}


def fail(exc: BaseException, *, as_json: bool, exit_code: int = 1) -> NoReturn:
    payload = error_payload(exc)
    if as_json:
        print_json(payload)
    if isinstance(exc, ApiError):
        err.print(
            f"[bold red]error:[/] {escape(exc.message)}\n"
            f"  code: {exc.code}  status: {exc.status}  request_id: {exc.request_id}",
            markup=True,
        )
    elif isinstance(exc, AvcError | OSError | ValueError | TimeoutError):
        err.print(f"[bold red]error:[/] {escape(str(exc))}", markup=True)
    else:
        raise exc
    raise typer.Exit(exit_code)
