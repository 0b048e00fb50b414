"""The public upload routes, at the public paths (the gateway forwards them unchanged with the
caller's internal token). Thin: each hands the request's stream and headers to the service.

Bodies are read by the service as streams, never parsed by FastAPI: JSON bodies are accepted
whatever their Content-Type (the seed's `curl -d` sends application/x-www-form-urlencoded) and
chunk bodies are raw bytes whatever theirs (`--data-binary` sends the same type).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Header, Request, Response
from starlette.requests import ClientDisconnect

from avc_common.errors import (
    BadRequest,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from avc_common.internal_auth import CurrentCaller
from avc_common.web import error_responses
from avc_upload.errors import (
    ChecksumMismatch,
    ChunkOutOfRange,
    ChunkSizeMismatch,
    DirectUploadTooLarge,
    FileTooLarge,
    IncompleteBody,
    InvalidFilename,
    InvalidForm,
    InvalidHeader,
    InvalidSize,
    InvalidTitle,
    MediaRefused,
    MediaUnavailable,
    MissingHeader,
    NotMultipart,
    StorageUnavailable,
    TooManyOpenUploads,
    UploadCompleted,
    UploadExpired,
    UploadIncomplete,
    UploadNotFound,
)
from avc_upload.schemas import (
    ChunkResponse,
    CompleteRequest,
    InitRequest,
    InitResponse,
    UploadStatusResponse,
    VideoCreated,
)
from avc_upload.service import UploadService


def get_service(request: Request) -> UploadService:
    service: UploadService = request.app.state.upload_service
    return service


Service = Annotated[UploadService, Depends(get_service)]


async def body_of(request: Request) -> AsyncIterator[bytes]:
    """Yields the request body as it arrives; a client that goes away mid-body is a 400
    `incomplete_body` (nobody reads the answer, but logs and metrics say what happened)."""
    try:
        async for piece in request.stream():
            yield piece
    except ClientDisconnect:
        raise IncompleteBody() from None


router = APIRouter(prefix="/api/v1/upload", tags=["upload"])


def _json_body(model: Any) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": "JSON, whatever the Content-Type says (curl -d works as is).",
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


_DIRECT_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "title": {"type": "string", "maxLength": 500},
                    },
                    "required": ["file"],
                }
            }
        },
    }
}
_CHUNK_BODY: Final = {
    "requestBody": {
        "required": True,
        "description": "The chunk's raw bytes, whatever the Content-Type says.",
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


@router.post(
    "",
    status_code=201,
    summary="Direct upload (small files)",
    responses=error_responses(
        Unauthorized,
        InvalidForm,
        InvalidFilename,
        InvalidTitle,
        InvalidSize,
        IncompleteBody,
        DirectUploadTooLarge,
        NotMultipart,
        MediaRefused,
        MediaUnavailable,
    ),
    openapi_extra=_DIRECT_BODY,
)
async def direct_upload(request: Request, caller: CurrentCaller, service: Service) -> VideoCreated:
    with request.app.state.upload_metrics.receiving("direct"):
        return await service.direct_upload(
            caller,
            content_type=request.headers.get("content-type"),
            content_length=request.headers.get("content-length"),
            body=body_of(request),
        )


@router.post(
    "/init",
    status_code=201,
    summary="Begin a chunked upload",
    responses=error_responses(
        Unauthorized,
        BadRequest,
        InvalidFilename,
        InvalidSize,
        InvalidTitle,
        FileTooLarge,
        TooManyOpenUploads,
        StorageUnavailable,
    ),
    openapi_extra=_json_body(InitRequest),
)
async def init_upload(request: Request, caller: CurrentCaller, service: Service) -> InitResponse:
    return await service.init_upload(caller, body=body_of(request))


@router.post(
    "/chunk",
    summary="Upload one chunk",
    responses=error_responses(
        Unauthorized,
        MissingHeader,
        InvalidHeader,
        ChunkOutOfRange,
        ChunkSizeMismatch,
        IncompleteBody,
        UploadNotFound,
        UploadCompleted,
        UploadExpired,
        ChecksumMismatch,
        StorageUnavailable,
    ),
    openapi_extra=_CHUNK_BODY,
)
async def upload_chunk(
    request: Request,
    caller: CurrentCaller,
    service: Service,
    x_upload_id: Annotated[str | None, Header(description="The upload_id from init.")] = None,
    x_chunk_index: Annotated[
        str | None, Header(description="0-based chunk number, 0..total_chunks-1.")
    ] = None,
    x_chunk_sha256: Annotated[
        str | None, Header(description="Optional hex SHA-256 of this chunk, checked.")
    ] = None,
) -> ChunkResponse:
    with request.app.state.upload_metrics.receiving("chunk"):
        return await service.put_chunk(
            caller,
            upload_id=x_upload_id,
            chunk_index=x_chunk_index,
            chunk_sha256=x_chunk_sha256,
            content_length=request.headers.get("content-length"),
            body=body_of(request),
        )


@router.post(
    "/complete",
    summary="Finalize a chunked upload",
    responses=error_responses(
        Unauthorized,
        BadRequest,
        ValidationFailed,
        UploadNotFound,
        UploadIncomplete,
        UploadExpired,
        PayloadTooLarge,
        MediaRefused,
        MediaUnavailable,
    ),
    openapi_extra=_json_body(CompleteRequest),
)
async def complete_upload(
    request: Request, caller: CurrentCaller, service: Service
) -> VideoCreated:
    return await service.complete(caller, body=body_of(request))


@router.get(
    "/{upload_id}",
    summary="Upload status (what a client needs to resume)",
    responses=error_responses(Unauthorized, UploadNotFound, UploadExpired),
)
async def upload_status(
    upload_id: str, caller: CurrentCaller, service: Service
) -> UploadStatusResponse:
    return await service.status(caller, upload_id)


@router.delete(
    "/{upload_id}",
    status_code=204,
    summary="Abort a chunked upload (its parts are removed)",
    responses=error_responses(
        Unauthorized, UploadNotFound, UploadCompleted, UploadExpired, StorageUnavailable
    ),
)
async def abort_upload(upload_id: str, caller: CurrentCaller, service: Service) -> Response:
    await service.abort(caller, upload_id)
    return Response(status_code=204)
