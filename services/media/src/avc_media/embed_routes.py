"""Public embed and playback routes: `/api/v1/embed/{token}` (+ `/views`) and `/play/…`.

The gateway forwards these without credentials for anonymous viewers (no internal token) and
with a token naming the caller when credentials were sent (private videos need the owner)."""

from __future__ import annotations

import time
from email.utils import format_datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request, Response
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from avc_common.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
    ValidationFailed,
)
from avc_common.objects import ObjectNotFound, ObjectReader
from avc_common.objects import RangeNotSatisfiable as StoreRangeNotSatisfiable
from avc_common.web import current_request_id, error_responses
from avc_media import service
from avc_media.deps import Context, OptionalCaller, json_body, json_body_openapi
from avc_media.errors import (
    DomainNotAllowed,
    InvalidPlaybackToken,
    PlaybackTokenExpired,
    RangeNotSatisfiable,
    VideoNotReady,
)
from avc_media.playback import (
    UnsatisfiableRange,
    cache_control_for,
    content_type_for,
    object_key_for,
    parse_range,
)
from avc_media.repository import Visibility
from avc_media.schemas import Embed, ViewAccepted, ViewReport

router = APIRouter(tags=["embed"])

OriginHeader = Annotated[str | None, Header(alias="origin", include_in_schema=False)]
RefererHeader = Annotated[str | None, Header(alias="referer", include_in_schema=False)]


@router.get(
    "/api/v1/embed/{token}",
    response_model=Embed,
    summary="Public embed metadata of a video",
    responses=error_responses(Unauthorized, NotFound, DomainNotAllowed),
)
async def embed(
    token: str,
    caller: OptionalCaller,
    ctx: Context,
    response: Response,
    origin: OriginHeader = None,
    referer: RefererHeader = None,
) -> dict[str, Any]:
    # Each answer carries freshly minted playback URLs: no cache may hand them out again.
    response.headers["cache-control"] = "no-store"
    return await service.embed_metadata(
        ctx,
        embed_token=token,
        caller_account=caller.account_id if caller else None,
        origin=origin,
        referer=referer,
    )


@router.post(
    "/api/v1/embed/{token}/views",
    status_code=202,
    response_model=ViewAccepted,
    summary="Report a play start",
    responses=error_responses(
        Unauthorized,
        BadRequest,
        PayloadTooLarge,
        NotFound,
        DomainNotAllowed,
        VideoNotReady,
        ValidationFailed,
        ServiceUnavailable,
    ),
    openapi_extra=json_body_openapi(ViewReport, required=False),
)
async def report_view(
    token: str,
    caller: OptionalCaller,
    ctx: Context,
    report: Annotated[ViewReport, Depends(json_body(ViewReport, optional=True))],
    origin: OriginHeader = None,
    referer: RefererHeader = None,
) -> dict[str, Any]:
    counted = await service.record_view(
        ctx,
        embed_token=token,
        caller_account=caller.account_id if caller else None,
        origin=origin,
        referer=referer,
        session_id=report.session_id,
        request_id=current_request_id(),
    )
    return {"counted": counted}


async def play(playback_token: str, file_path: str, request: Request, ctx: Context) -> Response:
    grant = ctx.urls.verify(playback_token)
    key = object_key_for(grant.video_id, file_path)
    if key is None:
        raise NotFound("No such file.")
    video = await service.playable_video(ctx, grant)
    try:
        info = await ctx.objects.stat(key)
    except ObjectNotFound:
        raise NotFound("No such file.") from None

    seconds_left = int(grant.expires_at - time.time())
    etag = f'"{info.etag}"'
    last_modified = format_datetime(info.last_modified, usegmt=True)
    headers = {
        "accept-ranges": "bytes",
        "cache-control": cache_control_for(
            file_path,
            private=video.visibility is Visibility.PRIVATE,
            seconds_left=seconds_left,
        ),
        "etag": etag,
        "last-modified": last_modified,
        "content-type": content_type_for(file_path),
    }
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)

    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() not in (etag, last_modified):
        range_header = None  # the client's copy is stale: send the whole file
    try:
        byte_range = parse_range(range_header, info.size)
    except UnsatisfiableRange:
        raise RangeNotSatisfiable(
            headers={"content-range": f"bytes */{info.size}", "accept-ranges": "bytes"}
        ) from None

    status = 200
    offset, length = 0, info.size
    if byte_range is not None:
        status = 206
        offset, length = byte_range.start, byte_range.length
        headers["content-range"] = f"bytes {byte_range.start}-{byte_range.end}/{info.size}"
    headers["content-length"] = str(length)
    if request.method == "HEAD":
        return _HeadResponse(status_code=status, headers=headers)
    try:
        reader = await ctx.objects.get(key, offset=offset, length=length if status == 206 else None)
    except ObjectNotFound:
        raise NotFound("No such file.") from None
    except StoreRangeNotSatisfiable as exc:
        size = exc.size if exc.size is not None else info.size
        raise RangeNotSatisfiable(
            headers={"content-range": f"bytes */{size}", "accept-ranges": "bytes"}
        ) from None
    return ObjectResponse(reader, status_code=status, headers=headers)


_PLAY_PATH = "/play/{playback_token}/{file_path:path}"
_PLAY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The file: a playlist, segment, poster or subtitle file.",
        "content": {"application/vnd.apple.mpegurl": {}, "video/mp2t": {}, "image/jpeg": {}},
    },
    206: {"description": "The requested byte range."},
    304: {"description": "Not modified (`If-None-Match`)."},
    **error_responses(InvalidPlaybackToken, PlaybackTokenExpired, NotFound, RangeNotSatisfiable),
}
router.add_api_route(
    _PLAY_PATH,
    play,
    methods=["GET"],
    operation_id="play_file",
    summary="HLS playlists, segments, poster and subtitle files of a video",
    response_class=Response,
    responses=_PLAY_RESPONSES,
)
router.add_api_route(
    _PLAY_PATH,
    play,
    methods=["HEAD"],
    operation_id="play_file_head",
    summary="Headers of a playback file (size, type, caching)",
    response_class=Response,
    responses=_PLAY_RESPONSES,
)


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return "*" in candidates or etag in candidates


class _HeadResponse(Response):
    """Headers only, keeping the Content-Length of the body a GET would send."""

    def __init__(self, *, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(status_code=status_code)
        self.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


class ObjectResponse(StreamingResponse):
    """Streams an object store read; the reader is released even when the client leaves."""

    def __init__(self, reader: ObjectReader, *, status_code: int, headers: dict[str, str]) -> None:
        super().__init__(reader, status_code=status_code, headers=headers)
        self._reader = reader

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._reader.aclose()
