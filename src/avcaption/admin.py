"""`avcaption admin …`: the operator's account and API-key commands.

They work directly on the gateway's database, chosen by the usual settings (`AVC_DATA_DIR`,
`AVC_DATABASE_URL`), and need the gateway's secrets (`AVC_API_KEY_SECRET`, or the ones generated
under the data dir): a key made with another secret would not work on the gateway.
Errors are one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

if TYPE_CHECKING:
    from avc_gateway.accounts.repository import Account
    from avc_gateway.accounts.service import Identity

admin = typer.Typer(
    name="admin",
    help="Manage accounts and API keys (on the database of AVC_DATA_DIR / AVC_DATABASE_URL).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


class PlanChoice(StrEnum):
    enterprise = "enterprise"
    premium = "premium"
    starter = "starter"


class RateClassChoice(StrEnum):
    read = "read"
    write = "write"
    upload = "upload"
    stats = "stats"


EmailOption = Annotated[str, typer.Option("--email", help="The account's email address.")]
T = TypeVar("T")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@asynccontextmanager
async def _open_identity() -> AsyncIterator[Identity]:
    from avc_common.config import Settings
    from avc_common.documents import open_documents
    from avc_gateway.accounts.service import open_identity
    from avc_gateway.config import GatewaySettings
    from avc_gateway.secrets_store import resolve_secrets

    settings = Settings()
    gateway_settings = GatewaySettings()
    secrets = resolve_secrets(gateway_settings, settings.resolved_data_dir)
    if secrets.generated_at is not None:
        typer.echo(
            f"warning: generated new gateway secrets in {secrets.generated_at}; a gateway "
            "that does not use this data dir (or the same AVC_API_KEY_SECRET) will not "
            "accept keys made here.",
            err=True,
        )
    db = await open_documents(settings.effective_database_url, "gateway")
    try:
        yield await open_identity(db, settings=gateway_settings, secrets=secrets)
    finally:
        await db.close()


def _run(action: Callable[[Identity], Awaitable[T]]) -> T:
    """Returns what `action` returns, run against the identity store; exits on errors."""
    from pydantic import ValidationError

    from avc_common.errors import AppError
    from avc_common.logging import configure_logging
    from avc_gateway.secrets_store import SecretsError

    # stdout carries the command's answer (`KEY=$(avcaption admin create-api-key …)`): log lines
    # (deprecated settings, adapter warnings) go to stderr as readable text.
    configure_logging(service="admin", level="WARNING", json=False, stream=sys.stderr)

    async def main() -> T:
        async with _open_identity() as identity:
            return await action(identity)

    try:
        return asyncio.run(main())
    except AppError as exc:
        _fail(exc.message)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        _fail(f"invalid settings: {problems}", code=2)
    except (SecretsError, ValueError, OSError) as exc:
        _fail(str(exc))


def _read_password(from_stdin: bool) -> str:
    from avc_common.errors import ValidationFailed
    from avc_gateway.accounts.service import check_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        check_password(password)
    except ValidationFailed as exc:
        _fail(exc.message)
    return password


def _describe(account: Account) -> str:
    preview = "on" if account.api_preview else "off"
    return f"{account.id} {account.email} plan={account.plan} api_preview={preview}"


@admin.command("create-account")
def create_account(
    email: EmailOption,
    plan: Annotated[PlanChoice, typer.Option("--plan", help="The account's plan.")],
    api_preview: Annotated[
        bool, typer.Option("--api-preview", help="Let a premium account use API keys.")
    ] = False,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from one line of stdin."),
    ] = False,
) -> None:
    """Create an account (password from a hidden prompt, or --password-stdin)."""
    password = _read_password(password_stdin)
    account = _run(
        lambda identity: identity.create_account(
            email=email, password=password, plan=plan.value, api_preview=api_preview
        )
    )
    typer.echo(f"created {_describe(account)}")


@admin.command("create-api-key")
def create_api_key(
    email: EmailOption,
    name: Annotated[str, typer.Option("--name", help="A name to recognise the key by.")],
) -> None:
    """Create an API key and print it (only the key, on stdout; it is not shown again)."""

    async def action(identity: Identity) -> str:
        account = await identity.account_by_email(email)
        _, key = await identity.create_api_key(account_id=account.id, name=name)
        return key

    typer.echo(_run(action))


@admin.command("set-plan")
def set_plan(
    email: EmailOption,
    plan: Annotated[PlanChoice, typer.Option("--plan", help="The new plan.")],
    api_preview: Annotated[
        bool | None,
        typer.Option(
            "--api-preview/--no-api-preview",
            help="Let a premium account use API keys (unchanged when not given).",
        ),
    ] = None,
) -> None:
    """Change an account's plan (and its API preview flag)."""
    account = _run(
        lambda identity: identity.set_plan(email=email, plan=plan.value, api_preview=api_preview)
    )
    typer.echo(f"updated {_describe(account)}")


@admin.command("set-rate-limit")
def set_rate_limit(
    email: EmailOption,
    rate_class: Annotated[
        RateClassChoice, typer.Option("--class", help="The rate class to change.")
    ],
    per_minute: Annotated[
        int | None, typer.Option("--per-minute", min=1, help="Requests per minute.")
    ] = None,
    reset: Annotated[
        bool, typer.Option("--reset", help="Drop the override: back to the default.")
    ] = False,
) -> None:
    """Override one rate class for one account (or --reset it to the default)."""
    if (per_minute is None) == (not reset):
        _fail("give either --per-minute N or --reset", code=2)

    async def action(identity: Identity) -> dict[str, int]:
        account = await identity.set_rate_limit(
            email=email, rate_class=rate_class.value, per_minute=per_minute
        )
        return {name: n for name, n in identity.effective_rate_limits(account).items()}

    limits = _run(action)
    shown = " ".join(f"{name}={value}" for name, value in limits.items())
    typer.echo(f"rate limits per minute for {email.strip().lower()}: {shown}")
