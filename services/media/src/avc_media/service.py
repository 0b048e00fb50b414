"""What the media API does: register, list, show, change and delete videos; embed metadata,
view reports and playback access. Routes stay thin; storage is in `repository`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any, Final

from avc_common.bus import Bus, BusError
from avc_common.documents import DocumentDatabase, DuplicateKey
from avc_common.errors import NotFound, ServiceUnavailable
from avc_common.events import Event, VideoDeleted, VideoViewed
from avc_common.ids import is_id, new_token
from avc_common.logging import get_logger
from avc_common.objects import ObjectStore
from avc_common.timeutil import to_rfc3339, utcnow
from avc_media.config import MediaSettings
from avc_media.domains import host_allowed, request_host
from avc_media.errors import DomainNotAllowed, PresetNotFound, VideoIdTaken, VideoNotReady
from avc_media.playback import (
    MASTER_PLAYLIST,
    THUMBNAIL,
    PlaybackGrant,
    mint_playback_token,
    source_prefix,
    verify_playback_token,
    video_prefix,
)
from avc_media.repository import (
    Deletions,
    EncodeJobs,
    Preset,
    PublicVideos,
    Subtitle,
    Video,
    VideoChanges,
    VideoRepository,
    VideoStatus,
    Visibility,
)
from avc_media.schemas import RegisterVideo

log = get_logger(__name__)

_MAX_EMBED_TOKEN_CHARS: Final = 100


class Urls:
    """Builds the media URLs clients get: through the gateway, absolute when
    `AVC_MEDIA_PUBLIC_BASE_URL` is set, else root-relative."""

    def __init__(self, *, base_url: str, secret: bytes, ttl_seconds: int) -> None:
        self.base_url = base_url.rstrip("/")
        self._secret = secret
        self._ttl = ttl_seconds

    def embed(self, embed_token: str) -> str:
        return f"{self.base_url}/api/v1/embed/{embed_token}"

    def playback_token(self, video_id: str) -> str:
        return mint_playback_token(video_id, secret=self._secret, ttl_seconds=self._ttl)

    def play(self, token: str, path: str) -> str:
        return f"{self.base_url}/play/{token}/{path}"

    def verify(self, token: str) -> PlaybackGrant:
        return verify_playback_token(token, secret=self._secret)


@dataclass
class MediaContext:
    """What the media routes work with, built once in the app's lifespan."""

    settings: MediaSettings
    urls: Urls
    videos: VideoRepository
    public: PublicVideos
    jobs: EncodeJobs
    deletions: Deletions
    objects: ObjectStore
    bus: Bus

    @classmethod
    def build(
        cls,
        *,
        settings: MediaSettings,
        secret: bytes,
        db: DocumentDatabase,
        objects: ObjectStore,
        bus: Bus,
    ) -> MediaContext:
        return cls(
            settings=settings,
            urls=Urls(
                base_url=settings.public_base_url,
                secret=secret,
                ttl_seconds=settings.playback_token_ttl_seconds,
            ),
            videos=VideoRepository(db),
            public=PublicVideos(db),
            jobs=EncodeJobs(db),
            deletions=Deletions(db),
            objects=objects,
            bus=bus,
        )


# ---- rendering -----------------------------------------------------------------------------


def _time(value: Any) -> Any:
    return to_rfc3339(value) if isinstance(value, datetime) else value


def _subtitles(subtitles: tuple[Subtitle, ...], urls: Urls, token: str | None) -> list[Any]:
    return [
        {
            "id": sub.id,
            **sub.fields,
            "created_at": _time(sub.created_at),
            "url": urls.play(token, sub.path) if token else None,
        }
        for sub in subtitles
    ]


def render_video(video: Video, urls: Urls) -> dict[str, Any]:
    """Returns the public video object (API.md "Videos"); media URLs only once it is ready."""
    token = urls.playback_token(video.id) if video.ready else None
    return {
        "id": video.id,
        "title": video.title,
        "filename": video.filename,
        "status": video.status.value,
        "size_bytes": video.size_bytes,
        "sha256": video.sha256,
        "duration_seconds": video.duration_seconds,
        "width": video.width,
        "height": video.height,
        "allowed_domains": list(video.allowed_domains),
        "visibility": video.visibility.value,
        "embed_token": video.embed_token,
        "embed_url": urls.embed(video.embed_token),
        "hls_url": urls.play(token, MASTER_PLAYLIST) if token else None,
        "thumbnail_url": urls.play(token, THUMBNAIL) if token else None,
        "renditions": [
            {"name": r.name, "width": r.width, "height": r.height, "bitrate_kbps": r.bitrate_kbps}
            for r in video.renditions
        ],
        "subtitles": _subtitles(video.subtitles, urls, token),
        "preset_id": video.preset_id,
        "error": (
            {"code": video.error.code, "message": video.error.message} if video.error else None
        ),
        "created_at": to_rfc3339(video.created_at),
        "updated_at": to_rfc3339(video.updated_at),
    }


def _render_preset(preset: Preset | None) -> dict[str, Any] | None:
    if preset is None:
        return None
    return {"id": preset.id, **{k: _time(v) for k, v in preset.settings.items()}}


# ---- videos (owner) ------------------------------------------------------------------------


async def register_video(
    ctx: MediaContext,
    *,
    account_id: str,
    registration: RegisterVideo,
    request_id: str | None = None,
) -> tuple[Video, bool]:
    """Returns the video registered for this upload and whether it was created just now.

    Idempotent on (account, upload_id): a repeat returns the same video and embed token."""
    existing = await ctx.videos.by_upload(account_id, registration.upload_id)
    if existing is not None:
        return existing, False
    now = utcnow()
    filename = registration.filename
    title = (registration.title or "").strip() or PurePosixPath(filename).stem or filename
    video = Video(
        id=registration.video_id,
        account_id=account_id,
        upload_id=registration.upload_id,
        title=title,
        filename=filename,
        status=VideoStatus.PROCESSING,
        size_bytes=registration.size_bytes,
        sha256=registration.sha256,
        source_key=registration.source_key,
        embed_token=new_token(),
        request_id=request_id,
        created_at=now,
        updated_at=now,
    )
    try:
        await ctx.videos.insert(video)
    except DuplicateKey:
        existing = await ctx.videos.by_upload(account_id, registration.upload_id)
        if existing is not None:  # a concurrent repeat won the race
            return existing, False
        raise VideoIdTaken() from None
    log.info("video_registered", video_id=video.id, upload_id=video.upload_id)
    return video, True


async def list_videos(
    ctx: MediaContext, *, account_id: str, page: int, per_page: int
) -> dict[str, Any]:
    """Returns one page of the account's videos, newest first."""
    videos, total = await ctx.videos.page(account_id, skip=(page - 1) * per_page, limit=per_page)
    return {
        "data": [render_video(v, ctx.urls) for v in videos],
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_pages": math.ceil(total / per_page) if total else 0,
    }


async def get_video(ctx: MediaContext, *, account_id: str, video_id: str) -> dict[str, Any]:
    """Returns the account's video object; NotFound for any other id."""
    video = await ctx.videos.get(account_id, video_id) if is_id(video_id, "vid") else None
    if video is None:
        raise NotFound("No video with this id.")
    return render_video(video, ctx.urls)


async def update_video(
    ctx: MediaContext, *, account_id: str, video_id: str, changes: VideoChanges
) -> dict[str, Any]:
    """Returns the video after applying `changes`; PresetNotFound for a preset the account
    does not have."""
    if not is_id(video_id, "vid"):
        raise NotFound("No video with this id.")
    preset_id = changes.preset_id
    if isinstance(preset_id, str) and await ctx.videos.preset(account_id, preset_id) is None:
        raise PresetNotFound()
    video = await ctx.videos.update(account_id, video_id, changes)
    if video is None:
        raise NotFound("No video with this id.")
    return render_video(video, ctx.urls)


async def delete_video(
    ctx: MediaContext, *, account_id: str, video_id: str, request_id: str | None
) -> None:
    """Deletes the video, every stored object of it, and announces `video.deleted`."""
    video = await ctx.videos.start_delete(account_id, video_id) if is_id(video_id, "vid") else None
    if video is None:
        raise NotFound("No video with this id.")
    await finish_delete(
        objects=ctx.objects,
        bus=ctx.bus,
        deletions=ctx.deletions,
        video=video,
        request_id=request_id,
    )


async def finish_delete(
    *,
    objects: ObjectStore,
    bus: Bus,
    deletions: Deletions,
    video: Video,
    request_id: str | None = None,
) -> None:
    """Runs (or resumes) the delete of a video marked deleted: records the bytes about to be
    freed with the `video.deleted` event, removes the objects, publishes, drops the record."""
    video_id = video.id
    source_bytes = sum(o.size for o in await objects.list(source_prefix(video_id)))
    renditions_bytes = sum(o.size for o in await objects.list(video_prefix(video_id)))
    event = Event.of(
        VideoDeleted(
            video_id=video_id,
            status=video.status.value,
            bytes_freed=source_bytes + renditions_bytes,
            source_bytes=source_bytes,
            renditions_bytes=renditions_bytes,
        ),
        account_id=video.account_id,
        request_id=request_id,
    )
    current = await deletions.record_sizes(
        video_id, source_bytes=source_bytes, renditions_bytes=renditions_bytes, event=event
    )
    if current is None:
        return  # another process finished it
    await objects.delete_prefix(source_prefix(video_id))
    await objects.delete_prefix(video_prefix(video_id))
    try:
        await publish_outbox(bus, current)
    except BusError:
        # The objects are gone and the video hidden; the media worker's re-drive publishes
        # the parked event and drops the record later.
        log.warning("video_deleted_event_deferred", video_id=video_id)
        return
    await deletions.remove(video_id)
    log.info(
        "video_deleted",
        video_id=video_id,
        bytes_freed=current.deleted_source_bytes + current.deleted_renditions_bytes,
    )


async def publish_outbox(bus: Bus, video: Video) -> list[str]:
    """Publishes the events parked on a video, oldest first; returns their ids."""
    for event in video.outbox:
        await bus.publish(event)
    return [e.id for e in video.outbox]


# ---- embed and playback (public) -----------------------------------------------------------


async def _embeddable(
    ctx: MediaContext,
    *,
    embed_token: str,
    caller_account: str | None,
    origin: str | None,
    referer: str | None,
) -> Video:
    """Returns the video behind an embed token if this request may see it.

    Private videos answer 404 to anyone but their owner (as if they did not exist); a
    non-empty `allowed_domains` needs a matching Origin (else Referer) host, else 403."""
    video = None
    if 0 < len(embed_token) <= _MAX_EMBED_TOKEN_CHARS:
        video = await ctx.public.by_embed_token(embed_token)
    if video is None:
        raise NotFound("No video with this embed token.")
    if video.visibility is Visibility.PRIVATE and caller_account != video.account_id:
        raise NotFound("No video with this embed token.")
    if not host_allowed(request_host(origin, referer), video.allowed_domains):
        raise DomainNotAllowed()
    return video


async def embed_metadata(
    ctx: MediaContext,
    *,
    embed_token: str,
    caller_account: str | None,
    origin: str | None,
    referer: str | None,
) -> dict[str, Any]:
    """Returns what a player needs to show the video (API.md "Embed and playback")."""
    video = await _embeddable(
        ctx, embed_token=embed_token, caller_account=caller_account, origin=origin, referer=referer
    )
    token = ctx.urls.playback_token(video.id) if video.ready else None
    preset_id = video.preset_id
    preset = await ctx.public.preset(video.account_id, preset_id) if preset_id else None
    return {
        "video_id": video.id,
        "title": video.title,
        "status": video.status.value,
        "duration_seconds": video.duration_seconds,
        "width": video.width,
        "height": video.height,
        "thumbnail_url": ctx.urls.play(token, THUMBNAIL) if token else None,
        "hls_url": ctx.urls.play(token, MASTER_PLAYLIST) if token else None,
        "subtitles": _subtitles(video.subtitles, ctx.urls, token),
        "preset": _render_preset(preset),
    }


async def record_view(
    ctx: MediaContext,
    *,
    embed_token: str,
    caller_account: str | None,
    origin: str | None,
    referer: str | None,
    session_id: str | None,
    request_id: str | None,
) -> bool:
    """Returns whether the play start counted as a view (published as `video.viewed`)."""
    video = await _embeddable(
        ctx, embed_token=embed_token, caller_account=caller_account, origin=origin, referer=referer
    )
    if not video.ready:
        raise VideoNotReady()
    video_id = video.id
    event = Event.of(
        VideoViewed(video_id=video_id, session_id=session_id),
        account_id=video.account_id,
        request_id=request_id,
    )
    now = utcnow()
    if session_id is not None and not await ctx.public.count_view(video_id, session_id, now=now):
        return False
    try:
        await ctx.bus.publish(event)
    except BusError:
        if session_id is not None:
            # Not counted after all: the player's retry must count.
            await ctx.public.forget_view(video_id, session_id, counted_at=now)
        raise ServiceUnavailable("The view could not be recorded; try again.") from None
    return True


async def playable_video(ctx: MediaContext, grant: PlaybackGrant) -> Video:
    """Returns the ready video a valid playback token names; NotFound when it is gone."""
    video = await ctx.public.by_id(grant.video_id)
    if video is None or not video.ready:
        raise NotFound("This video is not available.")
    return video
