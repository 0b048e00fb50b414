"""The upload service, one object the routes and the sweeper call: chunked uploads
(chunked.py, with the record's state machine), the direct upload (direct.py), completion and
cleanup shared by both (completion.py) and the sweeper's pass (sweep.py). Records are stored by
the repository package, scoped to the caller's account; the store's optional capabilities are
looked up once, in `UploadContext`.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable
from datetime import datetime

from avc_common.bus import Bus
from avc_common.internal_auth import Caller
from avc_common.objects import ObjectStore
from avc_common.timeutil import utcnow
from avc_upload.chunked import ChunkedUploads
from avc_upload.completion import Completion, UploadContext
from avc_upload.config import UploadSettings
from avc_upload.direct import DirectUploads
from avc_upload.media import MediaClient
from avc_upload.metrics import UploadMetrics
from avc_upload.repository import UploadRepository
from avc_upload.schemas import (
    ChunkResponse,
    InitRequest,
    InitResponse,
    UploadStatusResponse,
    VideoCreated,
)
from avc_upload.streams import FormReader
from avc_upload.sweep import Sweeper, SweepReport


class UploadService:
    def __init__(
        self,
        *,
        repository: UploadRepository,
        objects: ObjectStore,
        bus: Bus,
        media: MediaClient,
        settings: UploadSettings,
        metrics: UploadMetrics,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._repo = repository
        self.context = UploadContext(
            repo=repository,
            objects=objects,
            bus=bus,
            media=media,
            settings=settings,
            metrics=metrics,
            clock=clock,
        )
        completion = Completion(self.context)
        self.chunked = ChunkedUploads(self.context, completion)
        self.direct = DirectUploads(self.context, completion)
        self.sweeper = Sweeper(self.context, completion)

    async def init_upload(self, caller: Caller, request: InitRequest) -> InitResponse:
        return await self.chunked.init_upload(caller, request)

    async def put_chunk(
        self,
        caller: Caller,
        upload_id: str,
        index: int,
        sha256: str | None,
        length: int | None,
        body: AsyncIterable[bytes],
    ) -> ChunkResponse:
        return await self.chunked.put_chunk(caller, upload_id, index, sha256, length, body)

    async def status(self, caller: Caller, upload_id: str) -> UploadStatusResponse:
        return await self.chunked.status(caller, upload_id)

    async def abort(self, caller: Caller, upload_id: str) -> None:
        await self.chunked.abort(caller, upload_id)

    async def complete(self, caller: Caller, upload_id: str) -> VideoCreated:
        return await self.chunked.complete(caller, upload_id)

    def check_direct_length(self, declared: int | None) -> None:
        self.direct.check_length(declared)

    async def direct_upload(self, caller: Caller, form: FormReader) -> VideoCreated:
        return await self.direct.direct_upload(caller, form)

    async def sweep(self) -> SweepReport:
        return await self.sweeper.sweep()
