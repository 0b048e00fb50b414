"""What the deployment checks share: paths, the tools' locations, the settings and CLI truth."""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Final

import yaml
from pydantic_settings import BaseSettings

ROOT: Final = Path(__file__).resolve().parents[2]
DEPLOY: Final = ROOT / "deploy"
K8S: Final = DEPLOY / "k8s"
OVERLAYS: Final = ("dev", "prod")
COMPOSE_FILE: Final = ROOT / "docker-compose.yml"
ALERTS_FILE: Final = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD_FILE: Final = DEPLOY / "grafana" / "dashboards" / "avcaption.json"
BIN: Final = Path(sys.executable).parent
# checkov pins versions that clash with the application's (boto3, packaging): it has its own
# virtualenv from deploy/tools/checkov.lock (`make deploy-tools`).
CHECKOV: Final = ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"

# Packages whose `config`/`settings` modules hold every pydantic-settings class a component reads.
PACKAGES: Final = (
    "avc_common", "avc_gateway", "avc_upload", "avc_media", "avc_stats", "avc_webhooks",
)  # fmt: skip
# Read by the CLI itself (typer envvar), not by a settings class.
CLI_VARIABLES: Final = frozenset({"AVC_TARGET"})


def tool(name: str) -> str:
    """Returns the path of a command-line tool installed in this virtualenv (or on PATH)."""
    local = BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: `make setup` installs it (dev group)")
    return found


def run(
    args: list[str], *, cwd: Path = ROOT, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args, cwd=cwd, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "250", "TERM": "dumb", "NO_COLOR": "1"},
    )  # fmt: skip
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def _subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


@cache
def _import_settings_modules() -> tuple[Any, ...]:
    modules = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if info.name.rsplit(".", 1)[-1] in ("config", "settings"):
                modules.append(importlib.import_module(info.name))
    return tuple(modules)


@cache
def deprecated_variables() -> frozenset[str]:
    """Returns old variable names a settings module still reads (its `RENAMED_ENV`) with a
    warning: they still work, but the deployment files must not use them."""
    names: set[str] = set()
    for module in _import_settings_modules():
        names.update(getattr(module, "RENAMED_ENV", {}))
    return frozenset(names)


@cache
def setting_variables() -> frozenset[str]:
    """Returns every `AVC_*` environment variable some settings class reads (or the CLI)."""
    _import_settings_modules()
    names: set[str] = set(CLI_VARIABLES)
    classes = [c for c in _subclasses(BaseSettings) if c.__module__.startswith(PACKAGES)]
    assert len(classes) >= 7, f"settings classes found: {classes}"
    for cls in classes:
        prefix = str(cls.model_config.get("env_prefix", ""))
        if not prefix.startswith("AVC_"):
            continue
        for field_name, info in cls.model_fields.items():
            alias = info.validation_alias
            names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{field_name}".upper())
    return frozenset(names | deprecated_variables())


@cache
def cli_targets() -> frozenset[str]:
    """Returns the targets `avcaption serve --help` offers."""
    text = run([tool("avcaption"), "serve", "--help"]).stdout
    flat = re.sub(r"[\s│]+", " ", text)
    match = re.search(r"What to run: (.+?)\.", flat)
    assert match, f"no target list in `avcaption serve --help`:\n{text}"
    return frozenset(t.strip() for t in match.group(1).split(","))


@cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """Returns the objects `kubectl kustomize` renders for an overlay."""
    out = run([tool("kubectl"), "kustomize", str(K8S / "overlays" / overlay)]).stdout
    return tuple(doc for doc in yaml.safe_load_all(out) if doc)


def of_kind(objects: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def serve_target(args: list[str]) -> str | None:
    """Returns the target of a `serve --target X` argument list (None for other commands)."""
    if "serve" not in args:
        return None
    if "--target" in args:
        return args[args.index("--target") + 1]
    joined = [a for a in args if a.startswith("--target=")]
    return joined[0].split("=", 1)[1] if joined else "all"
