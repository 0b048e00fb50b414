"""Where `avc` finds its API key and URL: `--api-key`/`--api-url`, else `AVC_API_KEY` /
`AVC_API_URL`, else the profile file `avc login` wrote, else http://localhost:8080.

The profile file (`$AVC_CONFIG`, else `$XDG_CONFIG_HOME/avcaption/config.json`, else
`~/.config/avcaption/config.json`) holds keys: it is written with mode 0600 in a 0700
directory, replaced atomically."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._http import DEFAULT_API_URL


def config_path() -> Path:
    explicit = os.environ.get("AVC_CONFIG")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "avcaption" / "config.json"


def load_config(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"profiles": {}}
    if not isinstance(data, dict) or not isinstance(data.get("profiles"), dict):
        raise ValueError(f"{path}: not an avc profile file")
    return data


def save_profile(name: str, values: dict[str, str], path: Path | None = None) -> Path:
    """Stores one profile (mode 0600, atomic replace) and returns the file's path."""
    path = path or config_path()
    data = load_config(path)
    data["profiles"][name] = values
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


@dataclass
class Connection:
    api_url: str
    api_key: str | None
    profile: str


def resolve(api_key: str | None, api_url: str | None, profile: str) -> Connection:
    stored: dict[str, str] = {}
    try:
        stored = load_config().get("profiles", {}).get(profile, {}) or {}
    except (OSError, ValueError):
        stored = {}
    key = api_key or os.environ.get("AVC_API_KEY") or stored.get("api_key")
    url = api_url or os.environ.get("AVC_API_URL") or stored.get("api_url") or DEFAULT_API_URL
    return Connection(url.rstrip("/"), key, profile)
