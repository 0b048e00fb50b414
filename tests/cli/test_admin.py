"""`avcaption admin …` on the embedded database, checked against a real gateway app."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner, Result

from avc_common.config import Settings
from avc_common.web import LifespanManager
from avc_gateway.app import create_app
from avc_gateway.config import GatewaySettings
from avcaption.cli import app

runner = CliRunner()
PASSWORD = "a long enough password"
SECRETS = {"AVC_JWT_SECRET": "j" * 64, "AVC_API_KEY_SECRET": "k" * 40}
CHEAP_ARGON2 = {
    "AVC_GATEWAY_PASSWORD_HASH_TIME_COST": "1",
    "AVC_GATEWAY_PASSWORD_HASH_MEMORY_KIB": "64",
    "AVC_GATEWAY_PASSWORD_HASH_PARALLELISM": "1",
}


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str | None]:
    return {
        "AVC_DATA_DIR": str(tmp_path),
        "AVC_DATABASE_URL": None,
        **CHEAP_ARGON2,
        **SECRETS,
    }


def admin(env: dict[str, str | None], *args: str, stdin: str | None = None) -> Result:
    return runner.invoke(app, ["admin", *args], env=env, input=stdin)


def create(env: dict[str, str | None], email: str, plan: str = "enterprise", *extra: str) -> Result:
    return admin(
        env,
        "create-account",
        "--email",
        email,
        "--plan",
        plan,
        "--password-stdin",
        *extra,
        stdin=PASSWORD + "\n",
    )


def gateway_settings(env: dict[str, str | None]) -> GatewaySettings:
    return GatewaySettings(
        jwt_secret=SecretStr(env["AVC_JWT_SECRET"] or ""),
        api_key_secret=SecretStr(env["AVC_API_KEY_SECRET"] or ""),
        password_hash_time_cost=1,
        password_hash_memory_kib=64,
        password_hash_parallelism=1,
    )


def call_gateway(
    tmp_path: Path, gw: GatewaySettings, method: str, path: str, **kwargs: object
) -> httpx.Response:
    """Returns the response of one request to a gateway on the CLI's data dir."""

    async def go() -> httpx.Response:
        gateway = create_app(Settings(data_dir=tmp_path), gateway_settings=gw)
        async with (
            LifespanManager(gateway),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=gateway), base_url="http://test"
            ) as client,
        ):
            return await client.request(method, path, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_create_account_from_stdin_then_log_in(env: dict[str, str | None], tmp_path: Path) -> None:
    result = create(env, "Ops@Example.com", "premium", "--api-preview")
    assert result.exit_code == 0, result.output
    assert re.search(r"created acct_[0-9a-z]{25} ops@example.com plan=premium", result.stdout)
    assert "api_preview=on" in result.stdout
    assert PASSWORD not in result.output

    login = call_gateway(
        tmp_path,
        gateway_settings(env),
        "POST",
        "/api/v1/auth/login",
        json={"email": "ops@example.com", "password": PASSWORD},
    )
    assert login.status_code == 200
    assert login.json()["token_type"] == "bearer"


def test_create_account_with_the_hidden_prompt(env: dict[str, str | None]) -> None:
    result = admin(
        env,
        "create-account",
        "--email",
        "prompt@example.com",
        "--plan",
        "starter",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )
    assert result.exit_code == 0, result.output
    assert "Repeat for confirmation" in result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert "plan=starter api_preview=off" in result.stdout


def test_short_password_is_refused(env: dict[str, str | None]) -> None:
    result = admin(
        env,
        "create-account",
        "--email",
        "a@example.com",
        "--plan",
        "starter",
        "--password-stdin",
        stdin="short\n",
    )
    assert result.exit_code == 1
    assert "at least 10 characters" in result.stderr
    assert "Traceback" not in result.output
    # Nothing was created: the same email works afterwards.
    assert create(env, "a@example.com").exit_code == 0


def test_duplicate_email_fails_cleanly(env: dict[str, str | None]) -> None:
    assert create(env, "dup@example.com").exit_code == 0
    result = create(env, "DUP@example.com")
    assert result.exit_code == 1
    assert "already exists" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_bad_plan_fails_cleanly(env: dict[str, str | None]) -> None:
    result = create(env, "p@example.com", "platinum")
    assert result.exit_code == 2
    assert "enterprise" in result.output
    assert "platinum" in result.output
    assert "Traceback" not in result.output


def test_create_api_key_prints_only_a_working_key(
    env: dict[str, str | None], tmp_path: Path
) -> None:
    assert create(env, "keys@example.com").exit_code == 0
    result = admin(env, "create-api-key", "--email", "keys@example.com", "--name", "deploys")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert re.fullmatch(r"avc_[0-9a-f]{64}", key)
    assert result.stdout == key + "\n"  # so that KEY=$(avcaption admin create-api-key …) works

    me = call_gateway(
        tmp_path, gateway_settings(env), "GET", "/api/v1/account", headers={"X-API-Key": key}
    )
    assert me.status_code == 200
    assert me.json()["email"] == "keys@example.com"


def test_create_api_key_for_an_unknown_email_fails_cleanly(env: dict[str, str | None]) -> None:
    result = admin(env, "create-api-key", "--email", "ghost@example.com", "--name", "x")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "ghost@example.com" in result.stderr
    assert "Traceback" not in result.output


def test_generated_secrets_are_shared_with_the_gateway(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "AVC_DATA_DIR": str(tmp_path),
        "AVC_DATABASE_URL": None,
        "AVC_JWT_SECRET": None,
        "AVC_API_KEY_SECRET": None,
        **CHEAP_ARGON2,
    }
    assert create(env, "quick@example.com").exit_code == 0
    result = admin(env, "create-api-key", "--email", "quick@example.com", "--name", "n")
    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert re.fullmatch(r"avc_[0-9a-f]{64}", key)

    # The quick start: the gateway is given no secrets either and reads the same file.
    gw = GatewaySettings(
        jwt_secret=SecretStr(""),
        api_key_secret=SecretStr(""),
        password_hash_time_cost=1,
        password_hash_memory_kib=64,
        password_hash_parallelism=1,
    )
    me = call_gateway(tmp_path, gw, "GET", "/api/v1/account", headers={"X-API-Key": key})
    assert me.status_code == 200


def test_set_plan_and_api_preview(env: dict[str, str | None], tmp_path: Path) -> None:
    assert create(env, "plan@example.com", "starter").exit_code == 0
    key = admin(env, "create-api-key", "--email", "plan@example.com", "--name", "k").stdout.strip()
    gw = gateway_settings(env)
    assert (
        call_gateway(tmp_path, gw, "GET", "/api/v1/account", headers={"X-API-Key": key}).status_code
        == 403
    )

    result = admin(
        env, "set-plan", "--email", "plan@example.com", "--plan", "premium", "--api-preview"
    )
    assert result.exit_code == 0, result.output
    assert "plan=premium api_preview=on" in result.stdout
    me = call_gateway(tmp_path, gw, "GET", "/api/v1/account", headers={"X-API-Key": key})
    assert me.status_code == 200
    assert me.json()["plan"] == "premium"

    # Without the flag the preview stays as it is; --no-api-preview turns it off.
    kept = admin(env, "set-plan", "--email", "plan@example.com", "--plan", "premium")
    assert "api_preview=on" in kept.stdout
    off = admin(
        env, "set-plan", "--email", "plan@example.com", "--plan", "premium", "--no-api-preview"
    )
    assert "api_preview=off" in off.stdout
    assert (
        call_gateway(tmp_path, gw, "GET", "/api/v1/account", headers={"X-API-Key": key}).status_code
        == 403
    )


def test_set_plan_for_an_unknown_email_fails_cleanly(env: dict[str, str | None]) -> None:
    result = admin(env, "set-plan", "--email", "nobody@example.com", "--plan", "starter")
    assert result.exit_code == 1
    assert "nobody@example.com" in result.stderr


def test_set_rate_limit_and_reset(env: dict[str, str | None], tmp_path: Path) -> None:
    assert create(env, "big@example.com").exit_code == 0
    result = admin(
        env,
        "set-rate-limit",
        "--email",
        "big@example.com",
        "--class",
        "read",
        "--per-minute",
        "5000",
    )
    assert result.exit_code == 0, result.output
    assert "read=5000 write=60 upload=60 stats=60" in result.stdout

    key = admin(env, "create-api-key", "--email", "big@example.com", "--name", "k").stdout.strip()
    me = call_gateway(
        tmp_path, gateway_settings(env), "GET", "/api/v1/account", headers={"X-API-Key": key}
    )
    assert me.json()["rate_limits"]["read"] == 5000
    assert me.headers["x-ratelimit-limit"] == "5000"

    reset = admin(env, "set-rate-limit", "--email", "big@example.com", "--class", "read", "--reset")
    assert reset.exit_code == 0, reset.output
    assert "read=300" in reset.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--class", "read"],  # neither --per-minute nor --reset
        ["--class", "read", "--per-minute", "5", "--reset"],  # both
        ["--class", "read", "--per-minute", "0"],
        ["--class", "public", "--per-minute", "5"],
    ],
)
def test_set_rate_limit_refuses_bad_arguments(env: dict[str, str | None], args: list[str]) -> None:
    result = admin(env, "set-rate-limit", "--email", "x@example.com", *args)
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_stdout_holds_only_the_key_when_settings_log_warnings(
    env: dict[str, str | None],
) -> None:
    """`KEY=$(avcaption admin create-api-key …)` must stay usable when a deprecated variable
    makes the settings log a warning: log lines go to stderr, the key alone to stdout."""
    import os
    import subprocess
    import sys

    KEY_ARGS = ("--email", "scripts@example.com", "--name", "ci")  # noqa: N806
    assert create(env, "scripts@example.com").exit_code == 0
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("AVC_")}
    child_env.update({k: v for k, v in env.items() if v is not None})
    child_env["AVC_READ_RATE_LIMIT_PER_MINUTE"] = "500"  # the old name of a gateway setting
    done = subprocess.run(
        [sys.executable, "-m", "avcaption", "admin", "create-api-key", *KEY_ARGS],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"avc_[0-9a-f]{64}\n", done.stdout), done.stdout
    assert "AVC_GATEWAY_READ_RATE_LIMIT_PER_MINUTE" in done.stderr
