"""`/api/v1/stats` and `/api/v1/stats/thresholds`: thin, the work is in service.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from avc_common.errors import BadRequest, PayloadTooLarge, Unauthorized, ValidationFailed
from avc_common.internal_auth import CurrentCaller
from avc_common.web import error_responses
from avc_common.web.body import body_schema, parse_body
from avc_stats.schemas import StatsResponse, Thresholds, ThresholdsUpdate, VideosByStatus
from avc_stats.service import StatsService

router = APIRouter(tags=["stats"])


def _service(request: Request) -> StatsService:
    service: StatsService = request.app.state.stats_service
    return service


Stats = Annotated[StatsService, Depends(_service)]


@router.get(
    "/api/v1/stats",
    response_model=StatsResponse,
    summary="The account's video, view and storage counters",
    responses=error_responses(Unauthorized),
)
async def get_stats(caller: CurrentCaller, stats: Stats) -> StatsResponse:
    counters = await stats.get_stats(account_id=caller.account_id)
    return StatsResponse(
        total_videos=counters.total_videos,
        total_views=counters.total_views,
        storage_used_bytes=counters.storage_used_bytes,
        videos_by_status=VideosByStatus(
            **{status.value: n for status, n in counters.videos_by_status.items()}
        ),
    )


@router.get(
    "/api/v1/stats/thresholds",
    response_model=Thresholds,
    summary="The view counts that fire `view.threshold`",
    responses=error_responses(Unauthorized),
)
async def get_thresholds(caller: CurrentCaller, stats: Stats) -> Thresholds:
    return Thresholds(views=await stats.get_thresholds(account_id=caller.account_id))


@router.put(
    "/api/v1/stats/thresholds",
    response_model=Thresholds,
    summary="Replace the view thresholds",
    openapi_extra=body_schema(ThresholdsUpdate),
    responses=error_responses(Unauthorized, BadRequest, PayloadTooLarge, ValidationFailed),
)
async def put_thresholds(request: Request, caller: CurrentCaller, stats: Stats) -> Thresholds:
    body = await parse_body(request, ThresholdsUpdate)
    saved = await stats.set_thresholds(account_id=caller.account_id, views=list(body.views))
    return Thresholds(views=saved)
