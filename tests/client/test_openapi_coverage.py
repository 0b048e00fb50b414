"""The hand-written clients cover the whole public API: every operation of the OpenAPI document
the gateway serves (taken from an in-process all-in-one app) has a method on `Client` and on
`AsyncClient`, and every error code the document names has its own exception type."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from avc_common.config import Settings
from avc_common.web import LifespanManager
from avcaption.allinone import create_all_in_one_app
from avcaption_client import AsyncClient, Client
from avcaption_client.errors import ERRORS_BY_CODE, ApiError, error_from_response
from avcaption_client.operations import OPERATIONS

METHODS = {"get", "put", "post", "delete", "patch", "head"}


@pytest.fixture(scope="module")
def openapi(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    import asyncio

    async def fetch() -> dict[str, Any]:
        app = create_all_in_one_app(Settings(data_dir=tmp_path_factory.mktemp("openapi")))
        transport = httpx.ASGITransport(app=app)
        async with (
            LifespanManager(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            response = await client.get("/api/v1/openapi.json")
        assert response.status_code == 200
        doc: dict[str, Any] = response.json()
        return doc

    return asyncio.run(fetch())


def shape(path: str) -> str:
    """A path template with its parameter names dropped (`{video_id}` and `{id}` alike)."""
    return re.sub(r"\{[^}]+\}", "{}", path)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for path, item in doc["paths"].items():
        for method in item:
            if method in METHODS:
                yield method.upper(), path


def test_every_operation_of_the_document_has_a_method(openapi: dict[str, Any]) -> None:
    known = {(method, shape(path)): name for (method, path), name in OPERATIONS.items()}
    found = list(operations(openapi))
    assert len(found) >= 25  # the document really is the whole API
    missing = [f"{m} {p}" for m, p in found if (m, shape(p)) not in known]
    assert not missing, f"operations without a client method: {missing}"
    for method, path in found:
        name = known[(method, shape(path))]
        sync = getattr(Client, name, None)
        asynchronous = getattr(AsyncClient, name, None)
        assert callable(sync), f"Client.{name} missing for {method} {path}"
        assert inspect.iscoroutinefunction(asynchronous), f"AsyncClient.{name} not async"
        assert not inspect.iscoroutinefunction(sync), f"Client.{name} is async"


def test_both_clients_offer_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}

    assert public(Client) - {"close"} == public(AsyncClient) - {"aclose"}


def test_every_documented_error_code_has_its_exception(openapi: dict[str, Any]) -> None:
    codes: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            value = node.get("value")
            if isinstance(value, dict) and isinstance(value.get("code"), str):
                codes.add(value["code"])
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(openapi)
    assert {"upload_expired", "rate_limited", "checksum_mismatch"} <= codes
    assert codes - set(ERRORS_BY_CODE) == set()
    types = {ERRORS_BY_CODE[code] for code in codes}
    assert len(types) == len(codes), "two codes share one exception type"


def test_an_error_answer_becomes_its_code_s_exception() -> None:
    body = {"error": "gone", "code": "upload_expired", "request_id": "req_1"}
    response = httpx.Response(410, json=body, request=httpx.Request("GET", "http://x/"))
    error = error_from_response(response)
    assert type(error).__name__ == "UploadExpiredError"
    assert (error.code, error.status, error.request_id, error.message) == (
        "upload_expired",
        410,
        "req_1",
        "gone",
    )
    odd = httpx.Response(
        502, text="<html>", headers={"X-Request-ID": "req_2"}, request=response.request
    )
    other = error_from_response(odd)
    assert isinstance(other, ApiError)
    assert (other.status, other.request_id, other.code) == (502, "req_2", "bad_gateway")


def test_the_package_ships_its_marker_for_type_checkers() -> None:
    import avcaption_client

    assert (Path(avcaption_client.__file__).parent / "py.typed").exists()
