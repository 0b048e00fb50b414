"""The objects port (blob storage): `open_objects(url)` picks the adapter once, from the URL.

file:///abs/dir                                            -> LocalObjectStore
s3://ACCESS:SECRET@host:port/bucket?secure=false&region=…  -> S3ObjectStore (S3 / MinIO)
"""

from __future__ import annotations

from urllib.parse import parse_qs, unquote, urlsplit

from avc_common.objects.base import (
    CHUNK_SIZE,
    ByteSource,
    InvalidKey,
    InvalidPart,
    MultipartNotFound,
    ObjectInfo,
    ObjectNotFound,
    ObjectReader,
    ObjectsError,
    ObjectStore,
    PartInfo,
    RangeNotSatisfiable,
    SizeMismatch,
    validate_key,
)
from avc_common.objects.local import LocalObjectStore
from avc_common.objects.s3 import S3ObjectStore

__all__ = [
    "CHUNK_SIZE",
    "ByteSource",
    "InvalidKey",
    "InvalidPart",
    "LocalObjectStore",
    "MultipartNotFound",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectReader",
    "ObjectStore",
    "ObjectsError",
    "PartInfo",
    "RangeNotSatisfiable",
    "S3ObjectStore",
    "SizeMismatch",
    "open_objects",
    "validate_key",
]

_SUPPORTED = "file:///absolute/dir or s3://ACCESS_KEY:SECRET_KEY@host:port/bucket"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def open_objects(url: str) -> ObjectStore:
    """Returns the object store for `url` (not started yet); raises ValueError for other URLs."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(
                f"object storage URL must be {_SUPPORTED}; file:// needs a path "
                "from the root (file:///data/objects)"
            )
        return LocalObjectStore(unquote(parts.path))
    if scheme == "s3":
        return _open_s3(url)
    raise ValueError(f"unsupported object storage URL scheme {parts.scheme!r}: use {_SUPPORTED}")


def _open_s3(url: str) -> S3ObjectStore:
    parts = urlsplit(url)
    endpoint = parts.netloc.rpartition("@")[2]
    bucket = parts.path.strip("/")
    if not parts.hostname or not endpoint or not bucket or "/" in bucket:
        raise ValueError(
            "S3 storage URL must look like s3://ACCESS_KEY:SECRET_KEY@host:port/bucket"
        )
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"secure", "region"}
    if unknown:
        raise ValueError(f"unknown S3 storage URL options {sorted(unknown)}: use secure, region")
    secure = True
    if "secure" in query:
        value = query["secure"][-1].lower()
        if value not in _TRUE | _FALSE:
            raise ValueError(f"secure must be true or false, got {value!r}")
        secure = value in _TRUE
    region = query["region"][-1] if "region" in query else None
    return S3ObjectStore(
        endpoint,
        bucket=bucket,
        access_key=unquote(parts.username) if parts.username else None,
        secret_key=unquote(parts.password) if parts.password else None,
        secure=secure,
        region=region or None,
    )
