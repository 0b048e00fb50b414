"""Storage of the media service: typed records (`records`), the owner's and the public view of
videos (`videos`), and the encode worker's bookkeeping (`jobs`). Only these modules know the
documents' field names and filters."""

from avc_media.repository.jobs import Deletions, EncodeJobs
from avc_media.repository.records import (
    KEEP,
    Encoded,
    Keep,
    Preset,
    Rendition,
    Subtitle,
    Video,
    VideoChanges,
    VideoError,
    VideoStatus,
    Visibility,
)
from avc_media.repository.videos import PublicVideos, VideoRepository, ensure_indexes

__all__ = [
    "KEEP",
    "Deletions",
    "EncodeJobs",
    "Encoded",
    "Keep",
    "Preset",
    "PublicVideos",
    "Rendition",
    "Subtitle",
    "Video",
    "VideoChanges",
    "VideoError",
    "VideoRepository",
    "VideoStatus",
    "Visibility",
    "ensure_indexes",
]
