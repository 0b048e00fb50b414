"""The web dashboard at `/` and `/dashboard/…`: log in, API keys, videos and uploads, webhooks,
stats. Server-rendered (Jinja2) with a little vendored script; every read and change goes
through the public API as the logged-in user (see `public_api`). docs/dashboard.md says more."""

from __future__ import annotations

from typing import Final

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from avc_gateway.dashboard.pages import router as pages_router
from avc_gateway.dashboard.relay import router as relay_router
from avc_gateway.dashboard.rendering import STATIC_DIR, STATIC_PATH

SWAGGER_UI: Final = f"{STATIC_PATH}/vendor/swagger-ui"
"""Swagger UI's files, served here so `/docs` needs no outside host."""


def install_dashboard(app: FastAPI) -> None:
    """Adds the dashboard's routes and static files to the gateway app (before the proxy's
    catch-all routes would see them: none of these paths is in the public route table)."""
    app.include_router(pages_router)
    app.include_router(relay_router)
    app.mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="dashboard-static")


__all__ = ["SWAGGER_UI", "install_dashboard"]
