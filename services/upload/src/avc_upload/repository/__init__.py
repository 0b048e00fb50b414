"""Upload records: typed records (records.py) and their storage (uploads.py). Only this package
knows the documents' field names and the database's filters."""

from avc_upload.repository.records import (
    IN_COMPLETION,
    Assembled,
    RecordedPart,
    Upload,
    UploadKind,
    UploadStatus,
    part_field,
)
from avc_upload.repository.uploads import UploadRepository

__all__ = [
    "IN_COMPLETION",
    "Assembled",
    "RecordedPart",
    "Upload",
    "UploadKind",
    "UploadRepository",
    "UploadStatus",
    "part_field",
]
