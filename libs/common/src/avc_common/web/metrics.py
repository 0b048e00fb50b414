"""Prometheus HTTP metrics, labelled by route template, and the `/metrics` endpoint.

Registry choice: every app owns a `CollectorRegistry` (`app.state.metrics_registry`) instead of
registering into prometheus_client's global one. Several apps live in one process (all-in-one
mode runs five, tests build dozens); with the global registry the second app would raise
"Duplicated timeseries", and tests would see each other's counts. `/metrics` renders the app's
registries merged family by family: its own, the global one (process/GC collectors, anything a
library registers at import), plus any added with `expose_registries` — all-in-one mode adds
the embedded services' registries to the gateway, so one scrape sees every component (each series
is told apart by its `service` label).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import iter_route_contexts
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Scope

UNMATCHED: Final = "<unmatched>"
# Up to a minute: uploads of large chunks are slow by nature.
DURATION_BUCKETS: Final = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """The HTTP request metrics of one app, registered in that app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "avc_http_requests_total",
            "HTTP requests handled, by route template and status.",
            ["service", "method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "avc_http_request_duration_seconds",
            "Time from request start to the end of the response body.",
            ["service", "method", "route"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )


class RouteTemplates:
    """Maps a matched route to its full template. Since FastAPI 0.137 `include_router` no longer
    copies routes, so `scope["route"].path` lacks the include prefixes; the route tree knows
    the full `path_format`."""

    def __init__(self) -> None:
        self._routes_seen = -1
        self._by_route: dict[int, list[tuple[BaseRoute, Any]]] = {}

    def resolve(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:
            return UNMATCHED
        app = scope.get("app")
        routes: Sequence[BaseRoute] = getattr(app, "routes", ())
        if len(routes) != self._routes_seen:
            self._rebuild(routes)
        candidates = self._by_route.get(id(route), ())
        if len(candidates) == 1:
            return str(candidates[0][1].path_format)
        path = _route_path(scope)
        for _, context in candidates:
            regex = getattr(context, "path_regex", None)
            if regex is not None and regex.match(path):
                return str(context.path_format)
        # Not in this app's tree (e.g. inside a mounted sub-app): the route's own template.
        return str(getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED))

    def _rebuild(self, routes: Sequence[BaseRoute]) -> None:
        by_route: dict[int, list[tuple[BaseRoute, Any]]] = {}
        for context in iter_route_contexts(routes):
            if context.path_format:
                # The route object is kept alongside so its id() cannot be reused.
                by_route.setdefault(id(context.original_route), []).append(
                    (context.original_route, context)
                )
        self._by_route = by_route
        self._routes_seen = len(routes)


def _route_path(scope: Scope) -> str:
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class _MergedCollector:
    """Merges families of the same name from several registries, so the text format holds
    each family once (Prometheus rejects repeated families)."""

    def __init__(self, registries: Iterable[CollectorRegistry]) -> None:
        self._registries = list(dict.fromkeys(registries))

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for registry in self._registries:
            for family in registry.collect():
                target = families.get(family.name)
                if target is None:
                    target = copy.copy(family)
                    target.samples = []
                    families[family.name] = target
                elif target.type != family.type:
                    continue
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key not in seen:
                        seen.add(key)
                        target.samples.append(sample)
        yield from families.values()


def metrics_registry(app: FastAPI) -> CollectorRegistry:
    """Returns the registry a component registers its own metrics in."""
    registry: CollectorRegistry = app.state.metrics_registry
    return registry


def expose_registries(app: FastAPI, *registries: CollectorRegistry) -> None:
    """Adds registries to what `app`'s `/metrics` shows (all-in-one: the embedded services)."""
    app.state.metrics_registries.extend(registries)


def install_metrics(app: FastAPI, registry: CollectorRegistry) -> None:
    """Makes `registry` the app's own (`metrics_registry(app)`) and serves `/metrics`."""
    app.state.metrics_registry = registry
    app.state.metrics_registries = [registry, REGISTRY]
    app.include_router(_router)


def render_metrics(registries: Iterable[CollectorRegistry], accept: str | None) -> Response:
    """Returns the exposition of `registries` in the format the scraper asked for."""
    encoder, content_type = choose_encoder(accept or "")
    body = encoder(_MergedCollector(registries))
    return Response(body, media_type=content_type)


_router = APIRouter()


@_router.get("/metrics", include_in_schema=False)
async def _metrics(request: Request) -> Response:
    return render_metrics(request.app.state.metrics_registries, request.headers.get("accept"))
