"""What `avcaption serve --target NAME` can run. Adding a component (`media-worker`, ...) is
adding one entry to COMPONENTS.

Factories are import strings, loaded only for the target being started: one container does not
import the other services, and `avcaption --help` stays fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from starlette.types import ASGIApp

from avc_common.config import Settings
from avc_common.runtime import Adapters

AppFactory = Callable[..., ASGIApp]
"""`factory(settings)` or, for components embedded in all-in-one mode, also `adapters=`."""

ALL: Final = "all"
# The component that faces clients when everything runs in one process.
FRONT: Final = "gateway"


@dataclass(frozen=True)
class Component:
    name: str
    factory: str
    """`module:function`; the function takes Settings and returns an ASGI app."""
    description: str
    embedded: bool = True
    """Started inside `--target all` (beside the gateway, which serves the port)."""

    def load(self) -> AppFactory:
        """Returns the factory function (importing its module)."""
        module, _, attr = self.factory.partition(":")
        return cast(AppFactory, getattr(importlib.import_module(module), attr))

    def create(self, settings: Settings, adapters: Adapters | None = None) -> ASGIApp:
        """Returns a new ASGI app; `adapters` are shared with the other components of the process
        (otherwise the app opens and closes its own)."""
        if adapters is None:
            return self.load()(settings)
        return self.load()(settings, adapters=adapters)


COMPONENTS: Final[dict[str, Component]] = {
    c.name: c
    for c in (
        Component(
            ALL,
            "avcaption.allinone:create_all_in_one_app",
            "every component in one process (the quick start)",
            embedded=False,
        ),
        Component(
            FRONT,
            "avc_gateway.app:create_app",
            "public API: auth, rate limits, request ids, routing",
            embedded=False,
        ),
        Component("upload", "avc_upload.app:create_app", "direct and chunked uploads"),
        Component("media", "avc_media.app:create_app", "videos, subtitles, presets"),
        Component("stats", "avc_stats.app:create_app", "counters and view thresholds"),
        Component("webhooks", "avc_webhooks.app:create_app", "webhook endpoints and deliveries"),
        Component(
            "media-worker",
            "avc_media.worker:create_worker_app",
            "encodes uploaded videos",
            embedded=True,
        ),
        Component(
            "webhooks-worker",
            "avc_webhooks.worker:create_worker_app",
            "sends webhook deliveries",
            embedded=True,
        ),
    )
}


def embedded_components() -> list[Component]:
    """Returns the components `--target all` runs beside the gateway, in start order."""
    return [c for c in COMPONENTS.values() if c.embedded]
