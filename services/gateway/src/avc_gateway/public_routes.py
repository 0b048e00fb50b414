"""Every public path the gateway serves or forwards, with its service, rate class and access.

This table is the one place that says which service owns a path; the proxy, the rate limiter
and the merged OpenAPI document all read it. Services serve their public routes at the very
same paths (the gateway forwards the path unchanged); their `/internal/...` routes are never
reachable through the gateway.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

Service = Literal["gateway", "upload", "media", "stats", "webhooks"]
RateClass = Literal["read", "write", "upload", "stats", "public", "login", "none"]
Access = Literal[
    "account",  # any authenticated caller (API keys still need enterprise or premium+preview)
    "enterprise",  # authenticated, and the account's plan is enterprise
    "jwt",  # authenticated with a dashboard session (JWT) only
    "public",  # no credentials needed; if some are sent they are checked (private embeds)
]


@dataclass(frozen=True)
class PublicRoute:
    method: str
    path: str
    """Template with `{name}` segments; `{name:path}` matches the rest of the path."""
    service: Service
    rate_class: RateClass
    access: Access
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\{(\w+):path\}", r"(?P<\1>.+)", self.path)
        regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", regex)
        object.__setattr__(self, "pattern", re.compile(f"^{regex}$"))


def _r(method: str, path: str, service: Service, rate: RateClass, access: Access) -> PublicRoute:
    return PublicRoute(method, path, service, rate, access)


PUBLIC_ROUTES: Final[tuple[PublicRoute, ...]] = (
    # gateway's own
    _r("POST", "/api/v1/auth/login", "gateway", "login", "public"),
    _r("GET", "/api/v1/account", "gateway", "read", "account"),
    _r("POST", "/api/v1/api-keys", "gateway", "write", "jwt"),
    _r("GET", "/api/v1/api-keys", "gateway", "read", "account"),
    _r("DELETE", "/api/v1/api-keys/{key_id}", "gateway", "write", "account"),
    # upload
    _r("POST", "/api/v1/upload", "upload", "upload", "account"),
    _r("POST", "/api/v1/upload/init", "upload", "upload", "account"),
    _r("POST", "/api/v1/upload/chunk", "upload", "none", "account"),
    _r("POST", "/api/v1/upload/complete", "upload", "upload", "account"),
    _r("GET", "/api/v1/upload/{upload_id}", "upload", "read", "account"),
    _r("DELETE", "/api/v1/upload/{upload_id}", "upload", "write", "account"),
    # media: videos, subtitles, presets, embed and playback
    _r("GET", "/api/v1/videos", "media", "read", "account"),
    _r("GET", "/api/v1/videos/{video_id}", "media", "read", "account"),
    _r("PUT", "/api/v1/videos/{video_id}", "media", "write", "account"),
    _r("DELETE", "/api/v1/videos/{video_id}", "media", "write", "account"),
    _r("GET", "/api/v1/videos/{video_id}/subtitles", "media", "read", "enterprise"),
    _r("POST", "/api/v1/videos/{video_id}/subtitles", "media", "write", "enterprise"),
    _r(
        "DELETE",
        "/api/v1/videos/{video_id}/subtitles/{subtitle_id}",
        "media",
        "write",
        "enterprise",
    ),
    _r("GET", "/api/v1/presets", "media", "read", "enterprise"),
    _r("POST", "/api/v1/presets", "media", "write", "enterprise"),
    _r("GET", "/api/v1/presets/{preset_id}", "media", "read", "enterprise"),
    _r("PUT", "/api/v1/presets/{preset_id}", "media", "write", "enterprise"),
    _r("DELETE", "/api/v1/presets/{preset_id}", "media", "write", "enterprise"),
    _r("GET", "/api/v1/embed/{token}", "media", "public", "public"),
    _r("POST", "/api/v1/embed/{token}/views", "media", "public", "public"),
    _r("GET", "/play/{playback_token}/{file_path:path}", "media", "public", "public"),
    _r("HEAD", "/play/{playback_token}/{file_path:path}", "media", "public", "public"),
    # stats
    _r("GET", "/api/v1/stats", "stats", "stats", "account"),
    _r("GET", "/api/v1/stats/views", "stats", "stats", "account"),
    _r("GET", "/api/v1/stats/thresholds", "stats", "stats", "account"),
    _r("PUT", "/api/v1/stats/thresholds", "stats", "write", "account"),
    # webhooks (Enterprise)
    _r("POST", "/api/v1/webhooks", "webhooks", "write", "enterprise"),
    _r("GET", "/api/v1/webhooks", "webhooks", "read", "enterprise"),
    _r("GET", "/api/v1/webhooks/{webhook_id}", "webhooks", "read", "enterprise"),
    _r("PUT", "/api/v1/webhooks/{webhook_id}", "webhooks", "write", "enterprise"),
    _r("DELETE", "/api/v1/webhooks/{webhook_id}", "webhooks", "write", "enterprise"),
    _r("GET", "/api/v1/webhooks/{webhook_id}/deliveries", "webhooks", "read", "enterprise"),
    _r(
        "POST", "/api/v1/webhooks/deliveries/{delivery_id}/retry", "webhooks", "write", "enterprise"
    ),
)


@dataclass(frozen=True)
class RouteMatch:
    route: PublicRoute | None
    """The route for this method and path; None when the path exists but not the method."""
    allowed_methods: tuple[str, ...]


def match_route(method: str, path: str) -> RouteMatch | None:
    """Returns the matching route (or the allowed methods for a 405); None for an unknown path."""
    allowed: list[str] = []
    for route in PUBLIC_ROUTES:
        if route.pattern.match(path):
            if route.method == method:
                return RouteMatch(route, (route.method,))
            allowed.append(route.method)
    if allowed:
        return RouteMatch(None, tuple(dict.fromkeys(allowed)))
    return None
