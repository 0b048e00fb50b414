from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from avcaption import __version__
from avcaption.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """Returns the output without Rich's box drawing and line wrapping."""
    return " ".join(text.replace("│", " ").split())


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"avcaption {__version__}"
    assert __version__ != "0.0.0"


def test_unknown_target_fails_cleanly() -> None:
    result = runner.invoke(app, ["serve", "--target", "nope"])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    output = flat(result.output)
    assert "unknown target 'nope'" in output
    assert "all, gateway, upload, media, stats, webhooks" in output
    assert "Traceback" not in result.output


def test_unknown_target_from_the_environment_fails_cleanly() -> None:
    result = runner.invoke(app, ["serve"], env={"AVC_TARGET": "nope"})
    assert result.exit_code == 2
    assert "unknown target 'nope'" in flat(result.output)


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "0"], {}, "--port"),
        ([], {"AVC_PORT": "eighty"}, "invalid settings: port"),
        ([], {"AVC_LOG_LEVEL": "chatty"}, "unknown log level 'chatty'"),
    ],
)
def test_invalid_settings_fail_cleanly(
    args: list[str], env: dict[str, str], message: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    result = runner.invoke(app, ["serve", "--data-dir", str(data_dir), *args], env=env)
    assert result.exit_code == 2
    assert message in flat(result.output)
    assert "Traceback" not in result.output
    assert not data_dir.exists()


def test_no_command_shows_help() -> None:
    result = runner.invoke(app, [])
    assert "serve" in result.output
    assert "version" in result.output


def test_serve_reports_a_bad_component_setting_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AVC_JWT_SECRET", "short")
    result = CliRunner().invoke(
        app, ["serve", "--target", "all", "--data-dir", str(tmp_path), "--port", "18556"]
    )
    assert result.exit_code != 0
    assert "AVC_JWT_SECRET" in result.output  # the variable, not the field
    assert "Traceback" not in result.output
