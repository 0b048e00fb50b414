"""`avc`: the AVCaption command line (typer + rich)."""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
