"""S3 / MinIO adapter of the objects port, on the `minio` SDK.

The SDK is blocking, so every call runs in a thread pool bounded by a dedicated CapacityLimiter
(also the size of the connection pool). Multipart parts go straight to S3's own multipart upload;
S3 needs a part's bytes (and length) before sending it, so one part is held in memory at a time.
"""

from __future__ import annotations

import builtins
import math
import os
import re
from collections.abc import Callable, Sequence
from contextlib import aclosing, suppress
from email.utils import parsedate_to_datetime
from typing import TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.to_thread
import certifi
import urllib3
from minio import Minio
from minio.datatypes import Object, Part
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.helpers import DictType
from urllib3.response import BaseHTTPResponse
from urllib3.util import Retry, Timeout

from avc_common.objects.base import (
    MAX_PART_NUMBER,
    ByteSource,
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
    check_range,
    iter_source,
    key_has_prefix,
    normalize_etag,
    sorted_parts,
    validate_key,
    validate_part_number,
    validate_prefix,
)
from avc_common.timeutil import ensure_utc, utcnow

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

MIN_PART_SIZE = 5 * 1024 * 1024
DEFAULT_PART_SIZE = 8 * 1024 * 1024
_MIB = 1024 * 1024
_DELETE_BATCH = 1000  # the DeleteObjects limit
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")

_ERRORS: dict[str, type[ObjectsError]] = {
    "NoSuchKey": ObjectNotFound,
    "NoSuchUpload": MultipartNotFound,
    "InvalidRange": RangeNotSatisfiable,
    "InvalidPart": InvalidPart,
    "InvalidPartOrder": InvalidPart,
    "EntityTooSmall": InvalidPart,
}


def _translate(exc: S3Error) -> ObjectsError:
    error = _ERRORS.get(exc.code or "", ObjectsError)
    return error(f"S3 {exc.code}: {exc.message} ({exc.object_name or exc.bucket_name or ''})")


def _content_type(value: str | None) -> str:
    return value or "application/octet-stream"


def _info_from_object(key: str, obj: Object) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=obj.size or 0,
        etag=normalize_etag(obj.etag or ""),
        content_type=_content_type(obj.content_type),
        last_modified=ensure_utc(obj.last_modified) if obj.last_modified else utcnow(),
    )


class _S3Reader(ObjectReader):
    def __init__(
        self,
        store: S3ObjectStore,
        response: BaseHTTPResponse,
        info: ObjectInfo,
        start: int,
        length: int,
    ) -> None:
        super().__init__(info, start, length)
        self._store = store
        self._response = response

    async def _read(self, max_bytes: int) -> bytes:
        return await self._store._call(self._response.read, max_bytes)

    async def _release(self) -> None:
        # A fully read response can go back to the pool; a half-read one must drop its socket.
        if self._remaining > 0:
            self._response.close()
        self._response.release_conn()


class S3ObjectStore(ObjectStore):
    """Objects in one S3 bucket (AWS S3, MinIO, or anything speaking the S3 API)."""

    def __init__(
        self,
        endpoint: str,
        *,
        bucket: str,
        access_key: str | None = None,
        secret_key: str | None = None,
        secure: bool = True,
        region: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        max_threads: int = 32,
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
        retries: int = 3,
    ) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (an S3 rule)")
        self._bucket = bucket
        self._endpoint = endpoint
        self._secure = secure
        self._region = region
        self._part_size = part_size
        self._limiter = anyio.CapacityLimiter(max_threads)
        # The SDK's default pool retries 5 times with 5-minute timeouts: far too long for /readyz.
        self._http = urllib3.PoolManager(
            timeout=Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=max_threads,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key or None,
            secret_key=secret_key if access_key else None,
            secure=secure,
            region=region,
            http_client=self._http,
        )

    @property
    def bucket(self) -> str:
        return self._bucket

    @property
    def endpoint(self) -> str:
        return self._endpoint

    @property
    def secure(self) -> bool:
        return self._secure

    @property
    def region(self) -> str | None:
        return self._region

    async def _call(self, func: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        """Returns `func(*args)` run in the pool, with SDK errors turned into port errors."""
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)
        except S3Error as exc:
            raise _translate(exc) from exc
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise ObjectsError(f"S3 request failed: {exc}") from exc

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if await self._call(self._client.bucket_exists, self._bucket):
            return
        try:
            await self._call(self._client.make_bucket, self._bucket)
        except ObjectsError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, S3Error) and cause.code == "BucketAlreadyOwnedByYou"):
                raise

    async def close(self) -> None:
        self._http.clear()

    async def ping(self) -> None:
        if not await self._call(self._client.bucket_exists, self._bucket):
            raise ObjectsError(f"bucket {self._bucket!r} does not exist")

    # -- reading -----------------------------------------------------------------------------

    async def stat(self, key: str) -> ObjectInfo:
        validate_key(key)
        obj = await self._call(self._client.stat_object, self._bucket, key)
        return _info_from_object(key, obj)

    async def get(self, key: str, *, offset: int = 0, length: int | None = None) -> ObjectReader:
        validate_key(key)
        check_range(offset, length)
        try:
            response = await self._call(
                self._client.get_object, self._bucket, key, offset, length or 0
            )
        except RangeNotSatisfiable as exc:
            size = None
            with suppress(ObjectsError):
                size = (await self.stat(key)).size
            raise RangeNotSatisfiable(str(exc), size=size) from exc
        try:
            ranged = offset > 0 or length is not None
            info, start, count = self._parse_get(key, response, start_wanted=ranged)
        except BaseException:
            response.close()
            response.release_conn()
            raise
        return _S3Reader(self, response, info, start, count)

    @staticmethod
    def _parse_get(
        key: str, response: BaseHTTPResponse, *, start_wanted: bool
    ) -> tuple[ObjectInfo, int, int]:
        headers = response.headers
        try:
            if response.status == 200 and start_wanted:
                raise ValueError("the server ignored the Range header")
            if response.status == 206:
                match = _CONTENT_RANGE.fullmatch(headers.get("Content-Range", "").strip())
                if match is None:
                    raise ValueError("missing Content-Range")
                first, last, size = (int(g) for g in match.groups())
                start, count = first, last - first + 1
            else:
                size = int(headers["Content-Length"])
                start, count = 0, size
            modified = headers.get("Last-Modified")
            last_modified = ensure_utc(parsedate_to_datetime(modified)) if modified else None
        except (KeyError, ValueError, TypeError) as exc:
            raise ObjectsError(f"unexpected GET response headers for {key!r}: {exc}") from exc
        info = ObjectInfo(
            key=key,
            size=size,
            etag=normalize_etag(headers.get("ETag", "")),
            content_type=_content_type(headers.get("Content-Type")),
            last_modified=last_modified or utcnow(),
        )
        return info, start, count

    async def _raw_keys(self, prefix: str) -> builtins.list[str]:
        def collect() -> builtins.list[str]:
            objects = self._client.list_objects(self._bucket, prefix=prefix or None, recursive=True)
            return [o.object_name for o in objects if o.object_name and not o.is_dir]

        keys = await self._call(collect)
        # S3 prefixes are plain string prefixes; the port's match whole segments.
        return sorted(k for k in keys if key_has_prefix(k, prefix))

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        keys = await self._raw_keys(validate_prefix(prefix))
        # ListObjects has no content type, so each object costs a HEAD (run concurrently).
        found: dict[str, ObjectInfo] = {}

        async def head(key: str) -> None:
            with suppress(ObjectNotFound):  # deleted while listing
                found[key] = await self.stat(key)

        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(head, key)
        return [found[k] for k in keys if k in found]

    # -- writing -----------------------------------------------------------------------------

    def _put_part_size(self, size: int | None) -> int:
        if size is None:
            return self._part_size
        needed = math.ceil(size / MAX_PART_NUMBER / _MIB) * _MIB
        return max(self._part_size, needed)

    async def _written(self, key: str, etag: str, size: int, content_type: str) -> ObjectInfo:
        """Returns the info of what was just written (a HEAD, for the server's Last-Modified)."""
        try:
            info = await self.stat(key)
        except ObjectNotFound:
            info = None
        if info is not None and info.etag == etag:
            return info
        # Replaced or deleted by someone else in between: describe our own write.
        return ObjectInfo(key, size, etag, content_type, utcnow())

    async def _abort_quietly(self, key: str, upload_id: str) -> None:
        with anyio.CancelScope(shield=True):
            # On failure the bucket's lifecycle rules must sweep the upload.
            with suppress(ObjectsError):
                await self.abort_multipart(key, upload_id)

    async def put(
        self,
        key: str,
        data: ByteSource,
        *,
        size: int | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        validate_key(key)
        if size is not None and size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        part_size = self._put_part_size(size)
        # The SDK adds its own headers to the dict it is given: each request gets a copy.
        headers: DictType = {"Content-Type": content_type}
        buffer = bytearray()
        total = 0
        upload_id: str | None = None
        parts: builtins.list[Part] = []

        async def send_part(body: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                upload_id = await self.create_multipart(key, content_type=content_type)
            if len(parts) == MAX_PART_NUMBER:
                raise ObjectsError(f"object {key!r} needs more than {MAX_PART_NUMBER} parts")
            number = len(parts) + 1
            etag = await self._call(
                self._client._upload_part, self._bucket, key, body, None, upload_id, number
            )
            parts.append(Part(number, normalize_etag(etag)))

        if isinstance(data, bytes) and len(data) <= part_size:
            if size is not None and len(data) != size:
                raise SizeMismatch(f"got {len(data)} bytes, declared {size}")
            # Already in memory and one part at most: a single PUT without copying.
            result = await self._call(
                self._client._put_object, self._bucket, key, data, dict(headers)
            )
            return await self._written(
                key, normalize_etag(result.etag or ""), len(data), content_type
            )
        try:
            async with aclosing(iter_source(data)) as chunks:
                async for chunk in chunks:
                    total += len(chunk)
                    if size is not None and total > size:
                        raise SizeMismatch(f"got more than the declared {size} bytes")
                    buffer += chunk
                    # Strictly more than a part: the last part is never empty, and an object of
                    # at most one part is a single atomic PUT.
                    while len(buffer) > part_size:
                        with memoryview(buffer) as view:
                            body = bytes(view[:part_size])
                        del buffer[:part_size]
                        await send_part(body)
            if size is not None and total != size:
                raise SizeMismatch(f"got {total} bytes, declared {size}")
            if upload_id is None:
                result = await self._call(
                    self._client._put_object, self._bucket, key, bytes(buffer), dict(headers)
                )
                etag = normalize_etag(result.etag or "")
            else:
                await send_part(bytes(buffer))
                buffer.clear()
                done = await self._call(
                    self._client._complete_multipart_upload, self._bucket, key, upload_id, parts
                )
                upload_id = None
                etag = normalize_etag(done.etag or "")
        except BaseException:
            if upload_id is not None:
                await self._abort_quietly(key, upload_id)
            raise
        return await self._written(key, etag, total, content_type)

    # -- deleting ----------------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        validate_key(key)
        with suppress(ObjectNotFound):
            await self._call(self._client.remove_object, self._bucket, key)

    async def delete_prefix(self, prefix: str) -> int:
        keys = await self._raw_keys(validate_prefix(prefix))
        deleted = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]

            def remove(names: builtins.list[str] = batch) -> builtins.list[str]:
                errors = self._client.remove_objects(
                    self._bucket, [DeleteObject(name) for name in names]
                )
                return [f"{e.name}: {e.code}" for e in errors if e.code != "NoSuchKey"]

            failures = await self._call(remove)
            if failures:
                raise ObjectsError(f"could not delete {len(failures)} objects: {failures[:5]}")
            deleted += len(batch)
        return deleted

    # -- multipart ---------------------------------------------------------------------------

    async def _upload_gone(self, key: str, upload_id: str) -> bool:
        """Returns whether the upload is known not to exist (some servers answer a part or a
        complete for an unknown upload with a 500 rather than NoSuchUpload)."""
        try:
            await self._call(self._client._list_parts, self._bucket, key, upload_id, 1)
        except MultipartNotFound:
            return True
        except ObjectsError:
            return False
        return False

    @staticmethod
    def _check_upload_id(upload_id: str) -> None:
        if not isinstance(upload_id, str) or not upload_id.strip():
            raise MultipartNotFound(f"no multipart upload {upload_id!r}")

    async def create_multipart(
        self,
        key: str,
        *,
        content_type: str = "application/octet-stream",
    ) -> str:
        validate_key(key)
        headers: DictType = {"Content-Type": content_type}
        return await self._call(self._client._create_multipart_upload, self._bucket, key, headers)

    async def put_part(
        self, key: str, upload_id: str, part_number: int, data: ByteSource, *, size: int
    ) -> PartInfo:
        validate_key(key)
        validate_part_number(part_number)
        self._check_upload_id(upload_id)
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        pieces: builtins.list[bytes] = []
        received = 0
        async with aclosing(iter_source(data)) as chunks:
            async for chunk in chunks:
                received += len(chunk)
                if received > size:
                    raise SizeMismatch(f"part {part_number} has more than the declared {size}")
                pieces.append(chunk)
        if received != size:
            raise SizeMismatch(f"part {part_number} has {received} bytes, declared {size}")
        body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        try:
            etag = await self._call(
                self._client._upload_part,
                self._bucket,
                key,
                body,
                None,
                upload_id,
                part_number,
            )
        except ObjectsError as exc:
            if type(exc) is ObjectsError and await self._upload_gone(key, upload_id):
                raise MultipartNotFound(f"no multipart upload {upload_id!r}") from exc
            raise
        return PartInfo(part_number, normalize_etag(etag), size)

    async def list_parts(self, key: str, upload_id: str) -> builtins.list[PartInfo]:
        validate_key(key)
        self._check_upload_id(upload_id)
        parts: builtins.list[PartInfo] = []
        marker: str | None = None
        while True:
            result = await self._call(
                self._client._list_parts, self._bucket, key, upload_id, 1000, marker
            )
            parts.extend(PartInfo(p.part_number, p.etag, p.size or 0) for p in result.parts)
            if not result.is_truncated or not result.next_part_number_marker:
                break
            marker = result.next_part_number_marker
        return sorted(parts, key=lambda p: p.part_number)

    async def complete_multipart(
        self, key: str, upload_id: str, parts: Sequence[PartInfo]
    ) -> ObjectInfo:
        validate_key(key)
        self._check_upload_id(upload_id)
        ordered = [Part(p.part_number, normalize_etag(p.etag)) for p in sorted_parts(parts)]
        try:
            done = await self._call(
                self._client._complete_multipart_upload, self._bucket, key, upload_id, ordered
            )
        except ObjectsError as exc:
            if type(exc) is ObjectsError and await self._upload_gone(key, upload_id):
                raise MultipartNotFound(f"no multipart upload {upload_id!r}") from exc
            raise
        etag = normalize_etag(done.etag or "")
        size = sum(p.size for p in parts)
        return await self._written(key, etag, size, "application/octet-stream")

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        validate_key(key)
        if not isinstance(upload_id, str) or not upload_id.strip():
            return
        with suppress(MultipartNotFound):
            await self._call(self._client._abort_multipart_upload, self._bucket, key, upload_id)
