"""The upload service's client of media's internal API: "register this video".

Contract (media implements it): `POST /internal/v1/videos/register` with the caller's internal
token and JSON `{video_id, upload_id, filename, title, size_bytes, sha256, source_key}` answers
200/201 `{video_id, embed_token, status: "processing"}`, and is idempotent on
(account, upload_id): asking again returns the same answer. In all-in-one mode the call stays
in the process (the shared `ServiceClients` use an in-process transport).
"""

from __future__ import annotations

from typing import Final

import httpx
from pydantic import BaseModel, ValidationError

from avc_common.internal_auth import Caller
from avc_common.logging import get_logger
from avc_common.service_client import ServiceClients
from avc_upload.errors import MediaRefused, MediaUnavailable

REGISTER_PATH: Final = "/internal/v1/videos/register"

log = get_logger(__name__)


class RegisterVideo(BaseModel):
    video_id: str
    upload_id: str
    filename: str
    title: str | None
    size_bytes: int
    sha256: str
    source_key: str


class RegisteredVideo(BaseModel):
    video_id: str
    embed_token: str
    status: str


class MediaClient:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def register(self, caller: Caller, video: RegisterVideo) -> RegisteredVideo:
        """Returns media's answer for the video; raises MediaUnavailable (503, retry) when media
        cannot be reached or fails, MediaRefused (502) when it refuses or answers nonsense."""
        try:
            response = await self._clients.client("media").post(
                REGISTER_PATH,
                json=video.model_dump(mode="json"),
                headers=self._clients.headers_for(caller),
            )
        except httpx.HTTPError as exc:
            log.warning("media_register_unreachable", error=type(exc).__name__)
            raise MediaUnavailable() from exc
        if response.status_code >= 500 or response.status_code == 429:
            log.warning("media_register_failed", status=response.status_code)
            raise MediaUnavailable()
        if response.status_code not in (200, 201):
            log.error(
                "media_register_refused", status=response.status_code, body=response.text[:500]
            )
            raise MediaRefused()
        try:
            answer = RegisteredVideo.model_validate_json(response.content)
        except ValidationError as exc:
            log.error("media_register_bad_answer", body=response.text[:500])
            raise MediaRefused() from exc
        if answer.video_id != video.video_id:
            log.error("media_register_other_video", sent=video.video_id, got=answer.video_id)
            raise MediaRefused()
        return answer
