"""Videos API (`/api/v1/videos`) and the internal registration the upload service calls."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from avc_common.errors import BadRequest, NotFound, PayloadTooLarge, Unauthorized, ValidationFailed
from avc_common.internal_auth import CurrentCaller
from avc_common.web import current_request_id, error_responses
from avc_media import service
from avc_media.deps import Context, json_body, json_body_openapi
from avc_media.errors import PresetNotFound, VideoIdTaken
from avc_media.schemas import Registered, RegisterVideo, Video, VideoPage, VideoUpdate

router = APIRouter(tags=["videos"])
internal_router = APIRouter(tags=["internal"], include_in_schema=False)


@router.get(
    "/api/v1/videos",
    response_model=VideoPage,
    summary="List videos, newest first",
    responses=error_responses(Unauthorized, ValidationFailed),
)
async def list_videos(
    caller: CurrentCaller,
    ctx: Context,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    return await service.list_videos(
        ctx, account_id=caller.account_id, page=page, per_page=per_page
    )


@router.get(
    "/api/v1/videos/{video_id}",
    response_model=Video,
    summary="One video, with its embed token",
    responses=error_responses(Unauthorized, NotFound),
)
async def get_video(video_id: str, caller: CurrentCaller, ctx: Context) -> dict[str, Any]:
    return await service.get_video(ctx, account_id=caller.account_id, video_id=video_id)


@router.put(
    "/api/v1/videos/{video_id}",
    response_model=Video,
    summary="Change title, allowed domains, visibility or player preset",
    responses=error_responses(
        Unauthorized, BadRequest, PayloadTooLarge, NotFound, ValidationFailed, PresetNotFound
    ),
    openapi_extra=json_body_openapi(VideoUpdate),
)
async def update_video(
    video_id: str,
    caller: CurrentCaller,
    ctx: Context,
    body: Annotated[VideoUpdate, Depends(json_body(VideoUpdate))],
) -> dict[str, Any]:
    return await service.update_video(
        ctx, account_id=caller.account_id, video_id=video_id, changes=body.changes()
    )


@router.delete(
    "/api/v1/videos/{video_id}",
    status_code=204,
    summary="Delete a video and every stored file of it",
    responses=error_responses(Unauthorized, NotFound),
)
async def delete_video(video_id: str, caller: CurrentCaller, ctx: Context) -> Response:
    await service.delete_video(
        ctx,
        account_id=caller.account_id,
        video_id=video_id,
        request_id=caller.request_id or current_request_id(),
    )
    return Response(status_code=204)


@internal_router.post(
    "/internal/v1/videos/register",
    response_model=Registered,
    status_code=201,
    responses=error_responses(BadRequest, ValidationFailed, VideoIdTaken),
)
async def register_video(
    caller: CurrentCaller,
    ctx: Context,
    response: Response,
    body: Annotated[RegisterVideo, Depends(json_body(RegisterVideo))],
) -> dict[str, Any]:
    """Registers an uploaded source as a video (201), or returns the video already registered
    for this upload (200). The upload service publishes `video.uploaded` afterwards."""
    video, created = await service.register_video(
        ctx,
        account_id=caller.account_id,
        registration=body,
        request_id=caller.request_id or current_request_id(),
    )
    if not created:
        response.status_code = 200
    # "processing" for a new video; a repeat after encoding says how it ended.
    return {"video_id": video.id, "embed_token": video.embed_token, "status": video.status.value}
