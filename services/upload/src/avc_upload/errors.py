"""The upload service's error codes (API.md "Upload", plus the ones it adds, docs/api.md)."""

from __future__ import annotations

from avc_common.errors import (
    AppError,
    BadGateway,
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    UnsupportedMediaType,
)


class UploadNotFound(NotFound):
    code = "upload_not_found"
    default_message = "No upload with this id."


class ChunkOutOfRange(BadRequest):
    code = "chunk_out_of_range"
    default_message = "The chunk index is outside 0..total_chunks-1."


class ChunkSizeMismatch(BadRequest):
    code = "chunk_size_mismatch"
    default_message = "The chunk does not have the expected length."


class ChecksumMismatch(AppError):
    status = 422
    code = "checksum_mismatch"
    default_message = "The chunk's SHA-256 does not match X-Chunk-SHA256."


class UploadCompleted(Conflict):
    code = "upload_completed"
    default_message = "This upload is already completed."


class UploadExpired(Gone):
    code = "upload_expired"
    default_message = "This upload expired before it was completed; start a new one."


class UploadIncomplete(Conflict):
    code = "upload_incomplete"
    default_message = "Some chunks are missing."


class MissingHeader(BadRequest):
    code = "missing_header"
    default_message = "A required header is missing."


class InvalidHeader(BadRequest):
    code = "invalid_header"
    default_message = "A header has an invalid value."


class InvalidFilename(BadRequest):
    code = "invalid_filename"
    default_message = "filename must be 1-255 characters, without '/', '\\' or control characters."


class InvalidTitle(BadRequest):
    code = "invalid_title"
    default_message = "title must be a string of at most 500 characters without control characters."


class InvalidSize(BadRequest):
    code = "invalid_size"
    default_message = "size must be a whole number of bytes, at least 1."


class FileTooLarge(PayloadTooLarge):
    code = "file_too_large"
    default_message = "The file is larger than the largest upload allowed."


class DirectUploadTooLarge(PayloadTooLarge):
    code = "payload_too_large"
    default_message = "The file is too large for a direct upload; use the chunked upload."


class InvalidForm(BadRequest):
    code = "invalid_form"
    default_message = "The body must be a multipart/form-data form with a `file` field."


class IncompleteBody(BadRequest):
    code = "incomplete_body"
    default_message = "The request body ended before it was complete (client disconnected?)."


class NotMultipart(UnsupportedMediaType):
    default_message = (
        "POST /api/v1/upload takes a multipart/form-data body (a `file` field and an optional "
        "`title`); for raw bytes use the chunked upload."
    )


class TooManyOpenUploads(RateLimited):
    code = "too_many_open_uploads"
    default_message = "Too many chunked uploads are open for this account."


class StorageUnavailable(ServiceUnavailable):
    default_message = "Storage is unavailable right now; retry the same request."


class MediaUnavailable(ServiceUnavailable):
    default_message = "The video could not be registered right now; retry the same request."


class MediaRefused(BadGateway):
    default_message = "The media service refused to register the video."
