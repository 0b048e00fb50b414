"""Every `AppError` a route can raise is documented in its `responses=`.

The errors a route can raise are found by reading the code, not by trusting a list: starting
from the route's endpoint and its dependencies, every `raise` of an `AppError` subclass is
collected, following calls into our own functions (`avc_*` packages) — module functions through
the caller's globals, `self.method(...)` through the class, and `param.method(...)` through the
parameter's type hint (the service a route is handed). FastAPI's own `RequestValidationError`
(a bad query or path parameter, or a body that fails its model) is rendered as
`validation_error`, so it counts as `ValidationFailed`. The analysis over-approximates (an
error raised inside a `try` that catches it still counts), so a failure means: document it, or
stop raising it.

Add a service by adding its app factory to `SERVICES`.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
from fastapi import FastAPI, Query
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute, iter_route_contexts

from avc_common.config import Settings
from avc_common.errors import AppError, NotFound, ValidationFailed
from avc_common.web import error_responses

SERVICES: Final = {
    "media": "avc_media.app:create_app",
    "stats": "avc_stats.app:create_app",
    "upload": "avc_upload.app:create_app",
    "webhooks": "avc_webhooks.app:create_app",
}
OWN_PACKAGES: Final = ("avc_",)
FRAMEWORK_ERRORS: Final[dict[type[Exception], type[AppError]]] = {
    RequestValidationError: ValidationFailed,
}

ErrorKey = tuple[int, str]


def _key(cls: type[AppError]) -> ErrorKey:
    return (cls.status, cls.code)


def _own(obj: object, packages: tuple[str, ...]) -> bool:
    module = getattr(obj, "__module__", None) or ""
    return module.startswith(packages)


def _unwrap(fn: Any) -> Any:
    fn = inspect.unwrap(fn)
    return getattr(fn, "__func__", fn)


@dataclass
class RaiseFinder:
    """Collects the AppError classes a function can raise, following calls into our code."""

    own: tuple[str, ...] = OWN_PACKAGES
    seen: set[Any] = field(default_factory=set)
    found: set[type[AppError]] = field(default_factory=set)

    def visit(self, fn: Any, owner: type | None = None) -> None:
        fn = _unwrap(fn)
        if fn in self.seen or not inspect.isfunction(fn) or not _own(fn, self.own):
            return
        self.seen.add(fn)
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            return
        tree = ast.parse(source)
        scope = dict(fn.__globals__)
        if fn.__closure__:
            cells = [cell.cell_contents for cell in fn.__closure__]
            scope.update(zip(fn.__code__.co_freevars, cells, strict=True))
        hints = _hints(fn)
        locals_made = _local_constructions(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and node.exc is not None:
                self._raised(node.exc, scope, locals_made)
            elif isinstance(node, ast.Call):
                self._called(node.func, scope, hints, owner)

    def _raised(self, exc: ast.expr, scope: dict[str, Any], made: dict[str, ast.expr]) -> None:
        target = exc.func if isinstance(exc, ast.Call) else exc
        if isinstance(target, ast.Name) and target.id in made:
            target = made[target.id]
        cls = _resolve(target, scope)
        if isinstance(cls, type) and issubclass(cls, AppError):
            self.found.add(cls)
        elif isinstance(cls, type):
            for framework, app_error in FRAMEWORK_ERRORS.items():
                if issubclass(cls, framework):
                    self.found.add(app_error)

    def _called(
        self, func: ast.expr, scope: dict[str, Any], hints: dict[str, Any], owner: type | None
    ) -> None:
        if isinstance(func, ast.Name):
            target = scope.get(func.id)
            if inspect.isfunction(target):
                self.visit(target)
            elif (
                isinstance(target, type)
                and _own(target, self.own)
                and not issubclass(target, Exception)
            ):
                self.visit(getattr(target, "__init__", None), target)
            return
        if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)):
            return
        name = func.value.id
        cls = owner if name in ("self", "cls") else hints.get(name)
        if cls is None and name in scope:
            value = scope[name]  # a class, or an object the function closes over
            cls = value if isinstance(value, type) else type(value)
        if isinstance(cls, type) and _own(cls, self.own):
            method = inspect.getattr_static(cls, func.attr, None)
            if isinstance(method, (staticmethod, classmethod)):
                method = method.__func__
            if method is not None:
                self.visit(method, cls)


def _hints(fn: Any) -> dict[str, Any]:
    try:
        raw = typing.get_type_hints(fn)
    except Exception:
        return {}
    return {name: _plain(hint) for name, hint in raw.items()}


def _plain(hint: Any) -> Any:
    """Returns the class of a hint (`X`, `X | None`, `Annotated[X, ...]`), else None."""
    if isinstance(hint, type):
        return hint
    own = [a for a in typing.get_args(hint) if isinstance(a, type) and a is not type(None)]
    return own[0] if len(own) == 1 else None


def _local_constructions(tree: ast.AST) -> dict[str, ast.expr]:
    """Returns `name -> constructor` for `name = SomeError(...)` in the function (so that a
    prepared `raise name` is resolved)."""
    made: dict[str, ast.expr] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Call)
        ):
            made[node.targets[0].id] = node.value.func
    return made


def _resolve(node: ast.expr, scope: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name):
        return scope.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, scope)
        return getattr(base, node.attr, None) if base is not None else None
    return None


def _dependency_calls(route: APIRoute) -> Iterator[Callable[..., Any]]:
    stack = list(route.dependant.dependencies)
    while stack:
        dependant = stack.pop()
        if dependant.call is not None:
            yield dependant.call
        stack.extend(dependant.dependencies)


def raisable_errors(route: APIRoute, own: tuple[str, ...] = OWN_PACKAGES) -> set[type[AppError]]:
    """Returns the AppError classes the route (endpoint and dependencies) can raise."""
    finder = RaiseFinder(own=own)
    finder.visit(route.endpoint)
    for call in _dependency_calls(route):
        finder.visit(call)
    params = route.dependant.query_params + route.dependant.path_params
    if any(_constrained(p) for p in params):
        # FastAPI validates them before the endpoint runs: a bad value is `validation_error`.
        finder.found.add(ValidationFailed)
    return finder.found


def _constrained(param: Any) -> bool:
    """Returns whether a parameter can fail validation (a type other than str, or bounds)."""
    info = param.field_info
    return info.annotation is not str or bool(info.metadata)


def documented_errors(route: APIRoute) -> set[ErrorKey]:
    """Returns (status, code) of every error example in the route's `responses=`."""
    out: set[ErrorKey] = set()
    for status, response in (route.responses or {}).items():
        examples = response.get("content", {}).get("application/json", {}).get("examples", {})
        out.update((int(status), str(code)) for code in examples)
    return out


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Returns the app's FastAPI routes, those of included routers too."""
    routes = (context.original_route for context in iter_route_contexts(app.routes))
    return [route for route in routes if isinstance(route, APIRoute)]


def undocumented(app: FastAPI, own: tuple[str, ...] = OWN_PACKAGES) -> dict[str, list[ErrorKey]]:
    """Returns `"METHOD path" -> errors it can raise but does not document`."""
    missing: dict[str, list[ErrorKey]] = {}
    for route in api_routes(app):
        if not route.include_in_schema:
            continue
        raised = {_key(cls) for cls in raisable_errors(route, own)}
        gaps = sorted(raised - documented_errors(route))
        if gaps:
            missing[f"{','.join(sorted(route.methods))} {route.path}"] = gaps
    return missing


def _service_app(factory: str, tmp_path: Path) -> FastAPI:
    module, name = factory.split(":")
    create: Callable[[Settings], FastAPI] = getattr(importlib.import_module(module), name)
    return create(Settings(data_dir=tmp_path, internal_secret="r" * 40))


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_every_raisable_app_error_is_documented(service: str, tmp_path: Path) -> None:
    app = _service_app(SERVICES[service], tmp_path)
    routes = [r for r in api_routes(app) if r.path.startswith("/api/")]
    assert routes, f"{service} has no API routes to check"
    assert undocumented(app) == {}


@pytest.mark.parametrize("service", sorted(SERVICES))
def test_the_analysis_sees_the_errors_the_services_raise(service: str, tmp_path: Path) -> None:
    """Guards the checker itself: on every service it finds the auth error of the internal
    token (a dependency), and on each route that reads a JSON body the body reader's errors."""
    app = _service_app(SERVICES[service], tmp_path)
    for route in api_routes(app):
        if not route.path.startswith("/api/"):
            continue
        codes = {cls.code for cls in raisable_errors(route)}
        assert "unauthorized" in codes, route.path
        body = (route.openapi_extra or {}).get("requestBody", {})
        if "application/json" in body.get("content", {}):
            assert {"bad_request", "payload_too_large", "validation_error"} <= codes, route.path


class ThingMissing(NotFound):
    code = "thing_missing"
    default_message = "No such thing."


class _ThingService:
    async def get(self, thing_id: str) -> str:
        return await self._load(thing_id)

    async def _load(self, thing_id: str) -> str:
        if thing_id != "known":
            raise ThingMissing()
        return thing_id


def test_the_check_fails_for_an_error_left_out_of_responses() -> None:
    """The same check on a made-up app: an error two calls deep in the service, and a bounded
    query parameter, both missing from `responses=`, are reported; documented, they are not."""
    app = FastAPI()
    service = _ThingService()

    @app.get("/things/{thing_id}")
    async def get_thing(thing_id: str, limit: int = Query(1, ge=1)) -> str:
        return await service.get(thing_id)

    @app.get("/documented/{thing_id}", responses=error_responses(ThingMissing, ValidationFailed))
    async def get_documented(thing_id: str, limit: int = Query(1, ge=1)) -> str:
        return await service.get(thing_id)

    assert undocumented(app, own=(*OWN_PACKAGES, __name__)) == {
        "GET /things/{thing_id}": [(404, "thing_missing"), (422, "validation_error")]
    }
