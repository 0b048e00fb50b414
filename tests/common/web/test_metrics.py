from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
from fastapi import APIRouter, FastAPI

from avc_common.web import expose_registries, metrics_registry

MakeApp = Callable[..., FastAPI]
ClientFor = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]

API_KEY = "avc_" + "ab" * 32

videos = APIRouter(prefix="/videos")


@videos.get("/{video_id}")
async def get_video(video_id: str) -> dict[str, str]:
    return {"id": video_id}


@videos.get("/{video_id}/crash")
async def crash(video_id: str) -> None:
    raise RuntimeError("boom")


api = APIRouter(prefix="/api/v1")
api.include_router(videos)


def requests_total(app: FastAPI, **labels: str) -> float:
    value = metrics_registry(app).get_sample_value("avc_http_requests_total", labels)
    return value or 0.0


async def test_requests_are_labelled_by_route_template(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    app = make_app(service="media", routers=[api])
    async with client_for(app) as client:
        await client.get("/api/v1/videos/vid_1")
        await client.get(f"/api/v1/videos/vid_2?api_key={API_KEY}")
        await client.get("/api/v1/videos/vid_3/crash")
        await client.post("/api/v1/videos/vid_4")
        await client.get("/api/v1/nothing/vid_5")
        exposition = (await client.get("/metrics")).text

    template = "/api/v1/videos/{video_id}"
    common = {"service": "media", "method": "GET"}
    assert requests_total(app, **common, route=template, status="200") == 2
    assert requests_total(app, **common, route=template + "/crash", status="500") == 1
    assert requests_total(app, service="media", method="POST", route=template, status="405") == 1
    assert requests_total(app, **common, route="<unmatched>", status="404") == 1
    duration = metrics_registry(app).get_sample_value(
        "avc_http_request_duration_seconds_count", {**common, "route": template}
    )
    assert duration == 2
    for raw in ("vid_1", "vid_2", "vid_5", API_KEY, "api_key"):
        assert raw not in exposition


async def test_metrics_endpoint_serves_the_text_format(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    app = make_app(service="stats")
    async with client_for(app) as client:
        await client.get("/healthz")
        response = await client.get("/metrics")
        openmetrics = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE avc_http_requests_total counter" in text
    assert "# TYPE avc_http_request_duration_seconds histogram" in text
    assert (
        'avc_http_requests_total{method="GET",route="/healthz",service="stats",status="200"} 1.0'
        in text
    )
    # Process-wide collectors of the global registry are included.
    assert "python_info" in text
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")


async def test_apps_in_one_process_have_their_own_registries(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    first, second = make_app(service="upload"), make_app(service="upload")
    async with client_for(first) as client:
        await client.get("/healthz")
    async with client_for(second) as client:
        await client.get("/healthz")
        await client.get("/healthz")
    labels = {"service": "upload", "method": "GET", "route": "/healthz", "status": "200"}
    assert requests_total(first, **labels) == 1
    assert requests_total(second, **labels) == 2


async def test_exposed_registries_are_merged_into_one_exposition(
    make_app: MakeApp, client_for: ClientFor
) -> None:
    gateway, media = make_app(service="gateway"), make_app(service="media")
    expose_registries(gateway, metrics_registry(media))
    async with client_for(media) as client:
        await client.get("/healthz")
    async with client_for(gateway) as client:
        await client.get("/healthz")
        text = (await client.get("/metrics")).text
    assert text.count("# TYPE avc_http_requests_total counter") == 1
    assert text.count("# TYPE python_info gauge") == 1
    assert 'route="/healthz",service="gateway",status="200"} 1.0' in text
    assert 'route="/healthz",service="media",status="200"} 1.0' in text
