from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, FastAPI

from avc_common.config import Settings
from avc_common.web import create_service_app

MakeApp = Callable[..., FastAPI]

router = APIRouter(prefix="/api/v1")


@router.get("/things/{thing_id}")
async def get_thing(thing_id: str) -> dict[str, str]:
    return {"id": thing_id}


def test_app_knows_its_service_and_settings(settings: Settings) -> None:
    app = create_service_app(service="upload", settings=settings, version="1.2.3")
    assert app.state.service == "upload"
    assert app.state.settings is settings
    assert app.title == "AVCaption upload"
    assert app.version == "1.2.3"


def test_operational_endpoints_stay_out_of_the_api_docs(make_app: MakeApp) -> None:
    paths = make_app(routers=[router]).openapi()["paths"]
    assert list(paths) == ["/api/v1/things/{thing_id}"]
