"""The gateway in front of the services, each its own `avcaption serve` process, over real HTTP
and real RabbitMQ: request ids cross process boundaries, keys stay at the gateway, a stopped
service is a clean 503, and a service reached directly gives nothing without the gateway."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from avc_gateway.public_routes import PUBLIC_ROUTES

from .harness import Stack

pytestmark = [
    pytest.mark.slow,
]

MISSING_UPLOAD = "/api/v1/upload/upl_doesnotexist"


def _rid(label: str) -> str:
    return f"e2e-{label}-{uuid.uuid4().hex[:12]}"


def _assert_error(response: httpx.Response, status: int, request_id: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["x-request-id"] == request_id
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "code", "request_id"}, body
    assert body["request_id"] == request_id
    return body


@pytest.mark.parametrize("credential", ["header", "query"])
def test_request_id_crosses_the_gateway_and_the_key_does_not(
    services: Stack, api_key: str, credential: str
) -> None:
    key = api_key
    rid = _rid(credential)
    headers = {"X-Request-ID": rid}
    params = {}
    if credential == "header":
        headers["X-API-Key"] = key
    else:
        params["api_key"] = key

    response = httpx.get(
        f"{services.gateway.url}{MISSING_UPLOAD}", headers=headers, params=params, timeout=10
    )

    body = _assert_error(response, 404, rid)
    assert body["code"] in ("upload_not_found", "not_found")
    # Answered by the upload process: its own log line carries the same request id.
    line = services["upload"].wait_for_record(request_id=rid)
    assert line["service"] == "upload"
    services.gateway.wait_for_record(request_id=rid)
    for name, component in services.components.items():
        assert key not in component.text(), f"the API key is in the {name} log"


def _concrete(path: str) -> str:
    return re.sub(r"\{(\w+)(:path)?\}", lambda m: "x/y" if m.group(2) else "e2e_x", path)


@pytest.mark.parametrize("service", ["upload", "media", "stats", "webhooks"])
def test_every_service_is_reached_through_the_gateway(
    services: Stack, api_key: str, service: str
) -> None:
    key = api_key
    route = next(r for r in PUBLIC_ROUTES if r.service == service and r.method == "GET")
    rid = _rid(service)
    response = httpx.get(
        f"{services.gateway.url}{_concrete(route.path)}",
        headers={"X-API-Key": key, "X-Request-ID": rid},
        timeout=10,
    )
    assert response.status_code < 500, response.text
    assert response.headers["x-request-id"] == rid
    services[service].wait_for_record(request_id=rid)


def test_a_stopped_service_is_a_503_in_the_error_shape(fresh_services: Stack) -> None:
    key = fresh_services.api_key()
    assert fresh_services.stop("upload") == 0, fresh_services["upload"].tail()
    rid = _rid("down")
    response = httpx.get(
        f"{fresh_services.gateway.url}{MISSING_UPLOAD}",
        headers={"X-API-Key": key, "X-Request-ID": rid},
        timeout=10,
    )
    body = _assert_error(response, 503, rid)
    assert body["code"] == "service_unavailable"
    fresh_services.gateway.wait_for_record(request_id=rid, event="upstream_failed")


def test_a_service_called_directly_without_the_internal_token_answers_401(
    services: Stack, api_key: str
) -> None:
    key = api_key
    checked = []
    for service in ("upload", "media", "stats", "webhooks"):
        component = services[service]
        served = httpx.get(f"{component.url}/openapi.json", timeout=10).json().get("paths", {})
        for route in sorted(PUBLIC_ROUTES, key=lambda r: r.method != "GET"):
            if route.service != service or route.access == "public":
                continue
            if route.method.lower() not in served.get(re.sub(r":path\}", "}", route.path), {}):
                continue
            url = f"{component.url}{_concrete(route.path)}"
            for headers in ({"X-API-Key": key}, {"X-AVC-Internal-Token": "forged"}):
                rid = _rid("direct")
                response = httpx.request(
                    route.method, url, headers={**headers, "X-Request-ID": rid}, timeout=10
                )
                body = _assert_error(response, 401, rid)
                assert body["code"] == "unauthorized"
            checked.append(f"{route.method} {route.path}")
            break
    print(f"\nchecked directly: {checked}")
    # Every service serves authenticated public routes: each must have refused one.
    assert len(checked) == 4, checked
