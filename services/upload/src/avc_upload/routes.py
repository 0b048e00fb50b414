"""The public upload routes, at the public paths (the gateway forwards them unchanged with the
caller's internal token). Routes parse HTTP (headers, JSON bodies, the form's boundary) into
typed values; the service takes those and the body's stream.

Bodies are never parsed by FastAPI: JSON bodies are accepted whatever their Content-Type (the
seed's `curl -d` sends application/x-www-form-urlencoded) and read with the common reader
(`avc_common.web.body`), then validated by one model each (InitRequest/CompleteRequest, which
raise the coded errors); chunk bodies are raw bytes whatever theirs (`--data-binary` sends the
same type) and are streamed to storage.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from avc_common.errors import (
    AppError,
    BadRequest,
    PayloadTooLarge,
    Unauthorized,
    ValidationFailed,
)
from avc_common.internal_auth import CurrentCaller
from avc_common.web import error_responses
from avc_common.web.body import MAX_JSON_BODY_BYTES, parse_json_object, validate_body
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
from avc_upload.streams import FormReader, form_boundary, read_limited

M = TypeVar("M", bound=BaseModel)
_INDEX_RE: Final = re.compile(r"^-?[0-9]{1,12}$")
_SHA256_RE: Final = re.compile(r"^[0-9a-fA-F]{64}$")


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


async def json_request(request: Request, model: type[M]) -> M:
    """Returns the JSON body validated as `model` (413 over 64 KiB, 400 not JSON, 422 not an
    object; the model raises its coded errors)."""
    raw = await read_limited(body_of(request), limit=MAX_JSON_BODY_BYTES)
    return validate_body(parse_json_object(raw), model)


def content_length(request: Request) -> int | None:
    """Returns the Content-Length as a number, or None when absent (chunked encoding)."""
    value = request.headers.get("content-length")
    if value is None or not value.strip().isdigit():
        return None
    return int(value.strip())


def chunk_headers(
    upload_id: str | None, index: str | None, sha256: str | None
) -> tuple[str, int, str | None]:
    """Returns (upload id, chunk index, lowercase hex SHA-256 or None) from the headers."""
    if not upload_id:
        raise MissingHeader("The X-Upload-ID header is required (the upload_id from init).")
    if index is None or not index.strip():
        raise MissingHeader("The X-Chunk-Index header is required (0-based chunk number).")
    if not _INDEX_RE.match(index.strip()):
        raise InvalidHeader(f"X-Chunk-Index must be a whole number, not {index[:40]!r}.")
    if sha256 is not None:
        if not _SHA256_RE.match(sha256.strip()):
            raise InvalidHeader("X-Chunk-SHA256 must be 64 hexadecimal digits.")
        sha256 = sha256.strip().lower()
    return upload_id.strip(), int(index.strip()), sha256


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
        UploadExpired,
        StorageUnavailable,
        MediaRefused,
        MediaUnavailable,
    ),
    openapi_extra=_DIRECT_BODY,
)
async def direct_upload(request: Request, caller: CurrentCaller, service: Service) -> VideoCreated:
    with request.app.state.upload_metrics.receiving("direct"):
        boundary = form_boundary(request.headers.get("content-type"))
        if boundary is None:
            raise NotMultipart()
        service.check_direct_length(content_length(request))
        return await service.direct_upload(caller, FormReader(body_of(request), boundary))


@router.post(
    "/init",
    status_code=201,
    summary="Begin a chunked upload",
    responses=error_responses(
        Unauthorized,
        BadRequest,
        ValidationFailed,
        PayloadTooLarge,
        IncompleteBody,
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
    return await service.init_upload(caller, await json_request(request, InitRequest))


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
        try:
            upload_id, index, sha256 = chunk_headers(x_upload_id, x_chunk_index, x_chunk_sha256)
        except AppError:
            request.app.state.upload_metrics.chunk("rejected")
            raise
        return await service.put_chunk(
            caller, upload_id, index, sha256, content_length(request), body_of(request)
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
        IncompleteBody,
        StorageUnavailable,
        MediaRefused,
        MediaUnavailable,
    ),
    openapi_extra=_json_body(CompleteRequest),
)
async def complete_upload(
    request: Request, caller: CurrentCaller, service: Service
) -> VideoCreated:
    body = await json_request(request, CompleteRequest)
    return await service.complete(caller, body.upload_id)


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
