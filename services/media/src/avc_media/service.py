"""What the media API does: register, list, show, change and delete videos; embed metadata,
view reports and playback access. Routes stay thin; storage is in `repository`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Final

from avc_common.bus import Bus, BusError
from avc_common.documents import DocumentDatabase, DuplicateKey
from avc_common.errors import NotFound, ServiceUnavailable, ValidationFailed
from avc_common.events import Event, VideoDeleted, VideoViewed
from avc_common.ids import is_id, new_token
from avc_common.logging import get_logger
from avc_common.objects import InvalidKey, ObjectStore, validate_key
from avc_common.timeutil import to_rfc3339, utcnow
from avc_media.domains import host_allowed, request_host
from avc_media.errors import DomainNotAllowed, PresetNotFound, VideoIdTaken, VideoNotReady
from avc_media.playback import (
    MASTER_PLAYLIST,
    THUMBNAIL,
    PlaybackGrant,
    mint_playback_token,
    verify_playback_token,
    video_prefix,
)
from avc_media.repository import Deletions, Doc, EncodeJobs, PublicVideos, VideoRepository
from avc_media.schemas import RegisterVideo, VideoUpdate
from avc_media.settings import MediaSettings

log = get_logger(__name__)

_MAX_EMBED_TOKEN_CHARS: Final = 100


def source_prefix(video_id: str) -> str:
    """Returns the storage prefix of a video's uploaded source."""
    return f"sources/{video_id}"


class Urls:
    """Builds the media URLs clients get: through the gateway, absolute when
    `AVC_PUBLIC_BASE_URL` is set, else root-relative."""

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


def _subtitles(doc: Doc, urls: Urls, token: str | None) -> list[dict[str, Any]]:
    out = []
    for sub in doc.get("subtitles") or []:
        item = {k: v for k, v in sub.items() if k not in ("path", "account_id")}
        path = sub.get("path") or f"subtitles/{sub['id']}.vtt"
        item["url"] = urls.play(token, path) if token else None
        created = item.get("created_at")
        if created is not None and not isinstance(created, str):
            item["created_at"] = to_rfc3339(created)
        out.append(item)
    return out


def render_video(doc: Doc, urls: Urls) -> dict[str, Any]:
    """Returns the public video object (API.md "Videos"); media URLs only once it is ready."""
    token = urls.playback_token(doc["_id"]) if doc["status"] == "ready" else None
    return {
        "id": doc["_id"],
        "title": doc["title"],
        "filename": doc["filename"],
        "status": doc["status"],
        "size_bytes": doc["size_bytes"],
        "sha256": doc.get("sha256"),
        "duration_seconds": doc.get("duration_seconds"),
        "width": doc.get("width"),
        "height": doc.get("height"),
        "allowed_domains": list(doc.get("allowed_domains") or []),
        "visibility": doc.get("visibility", "public"),
        "embed_token": doc["embed_token"],
        "embed_url": urls.embed(doc["embed_token"]),
        "hls_url": urls.play(token, MASTER_PLAYLIST) if token else None,
        "thumbnail_url": urls.play(token, THUMBNAIL) if token else None,
        "renditions": [
            {
                "name": r["name"],
                "width": r["width"],
                "height": r["height"],
                "bitrate_kbps": r["bitrate_kbps"],
            }
            for r in doc.get("renditions") or []
        ],
        "subtitles": _subtitles(doc, urls, token),
        "preset_id": doc.get("preset_id"),
        "error": doc.get("error"),
        "created_at": to_rfc3339(doc["created_at"]),
        "updated_at": to_rfc3339(doc["updated_at"]),
    }


def _render_preset(doc: Doc | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    out: dict[str, Any] = {"id": doc["_id"]}
    for key, value in doc.items():
        if key in ("_id", "account_id"):
            continue
        out[key] = value if not hasattr(value, "isoformat") else to_rfc3339(value)
    return out


# ---- videos (owner) ------------------------------------------------------------------------


async def register_video(
    ctx: MediaContext, *, account_id: str, body: RegisterVideo, request_id: str | None = None
) -> tuple[Doc, bool]:
    """Returns the video registered for this upload and whether it was created just now.

    Idempotent on (account, upload_id): a repeat returns the same video and embed token."""
    if not is_id(body.video_id, "vid"):
        raise ValidationFailed("video_id must be a video id (vid_…).")
    try:
        validate_key(body.source_key)
    except InvalidKey:
        raise ValidationFailed("source_key is not a valid storage key.") from None
    if not body.source_key.startswith(source_prefix(body.video_id) + "/"):
        raise ValidationFailed(f"source_key must be under {source_prefix(body.video_id)}/.")
    existing = await ctx.videos.by_upload(account_id, body.upload_id)
    if existing is not None:
        return existing, False
    now = utcnow()
    title = (body.title or "").strip() or PurePosixPath(body.filename).stem or body.filename
    doc: Doc = {
        "_id": body.video_id,
        "account_id": account_id,
        "upload_id": body.upload_id,
        "title": title,
        "filename": body.filename,
        "status": "processing",
        "size_bytes": body.size_bytes,
        "sha256": body.sha256,
        "source_key": body.source_key,
        "duration_seconds": None,
        "width": None,
        "height": None,
        "allowed_domains": [],
        "visibility": "public",
        "embed_token": new_token(),
        "renditions": [],
        "renditions_bytes": None,
        "preset_id": None,
        "error": None,
        "encode_attempts": 0,
        "request_id": request_id,
        "created_at": now,
        "updated_at": now,
    }
    try:
        await ctx.videos.insert(doc)
    except DuplicateKey:
        existing = await ctx.videos.by_upload(account_id, body.upload_id)
        if existing is not None:  # a concurrent repeat won the race
            return existing, False
        raise VideoIdTaken() from None
    log.info("video_registered", video_id=body.video_id, upload_id=body.upload_id)
    return doc, True


async def list_videos(
    ctx: MediaContext, *, account_id: str, page: int, per_page: int
) -> dict[str, Any]:
    """Returns one page of the account's videos, newest first."""
    docs, total = await ctx.videos.page(account_id, skip=(page - 1) * per_page, limit=per_page)
    return {
        "data": [render_video(d, ctx.urls) for d in docs],
        "page": page,
        "per_page": per_page,
        "total": total,
        "total_pages": math.ceil(total / per_page) if total else 0,
    }


async def get_video(ctx: MediaContext, *, account_id: str, video_id: str) -> dict[str, Any]:
    """Returns the account's video object; NotFound for any other id."""
    doc = await ctx.videos.get(account_id, video_id) if is_id(video_id, "vid") else None
    if doc is None:
        raise NotFound("No video with this id.")
    return render_video(doc, ctx.urls)


async def update_video(
    ctx: MediaContext, *, account_id: str, video_id: str, changes: VideoUpdate
) -> dict[str, Any]:
    """Returns the video after applying the fields that were sent."""
    if not is_id(video_id, "vid"):
        raise NotFound("No video with this id.")
    fields = changes.model_dump(exclude_unset=True)
    for name in ("title", "visibility"):
        if name in fields and fields[name] is None:
            raise ValidationFailed(f"{name} cannot be null.")
    if "allowed_domains" in fields and fields["allowed_domains"] is None:
        fields["allowed_domains"] = []
    preset_id = fields.get("preset_id")
    if preset_id is not None and (
        not is_id(preset_id, "pre") or await ctx.videos.preset(account_id, preset_id) is None
    ):
        raise PresetNotFound()
    if fields:
        doc = await ctx.videos.update(account_id, video_id, fields)
    else:
        doc = await ctx.videos.get(account_id, video_id)
    if doc is None:
        raise NotFound("No video with this id.")
    return render_video(doc, ctx.urls)


async def delete_video(
    ctx: MediaContext, *, account_id: str, video_id: str, request_id: str | None
) -> None:
    """Deletes the video, every stored object of it, and announces `video.deleted`."""
    doc = await ctx.videos.start_delete(account_id, video_id) if is_id(video_id, "vid") else None
    if doc is None:
        raise NotFound("No video with this id.")
    await finish_delete(
        objects=ctx.objects, bus=ctx.bus, deletions=ctx.deletions, doc=doc, request_id=request_id
    )


async def finish_delete(
    *,
    objects: ObjectStore,
    bus: Bus,
    deletions: Deletions,
    doc: Doc,
    request_id: str | None = None,
) -> None:
    """Runs (or resumes) the delete of a video marked `deleted_at`: records the bytes about to
    be freed with the `video.deleted` event, removes the objects, publishes, drops the record."""
    video_id = doc["_id"]
    source_bytes = sum(o.size for o in await objects.list(source_prefix(video_id)))
    renditions_bytes = sum(o.size for o in await objects.list(video_prefix(video_id)))
    event = Event.of(
        VideoDeleted(
            video_id=video_id,
            status=doc["status"],
            bytes_freed=source_bytes + renditions_bytes,
            source_bytes=source_bytes,
            renditions_bytes=renditions_bytes,
        ),
        account_id=doc["account_id"],
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
        bytes_freed=current.get("deleted_source_bytes", 0)
        + current.get("deleted_renditions_bytes", 0),
    )


async def publish_outbox(bus: Bus, doc: Doc) -> list[str]:
    """Publishes the events parked on a video, oldest first; returns their ids."""
    events = [Event.model_validate(raw) for raw in (doc.get("outbox") or {}).values()]
    events.sort(key=lambda e: e.occurred_at)
    for event in events:
        await bus.publish(event)
    return [e.id for e in events]


# ---- embed and playback (public) -----------------------------------------------------------


async def _embeddable(
    ctx: MediaContext,
    *,
    embed_token: str,
    caller_account: str | None,
    origin: str | None,
    referer: str | None,
) -> Doc:
    """Returns the video behind an embed token if this request may see it.

    Private videos answer 404 to anyone but their owner (as if they did not exist); a
    non-empty `allowed_domains` needs a matching Origin (else Referer) host, else 403."""
    doc = None
    if 0 < len(embed_token) <= _MAX_EMBED_TOKEN_CHARS:
        doc = await ctx.public.by_embed_token(embed_token)
    if doc is None:
        raise NotFound("No video with this embed token.")
    if doc.get("visibility") == "private" and caller_account != doc["account_id"]:
        raise NotFound("No video with this embed token.")
    if not host_allowed(request_host(origin, referer), doc.get("allowed_domains") or []):
        raise DomainNotAllowed()
    return doc


async def embed_metadata(
    ctx: MediaContext,
    *,
    embed_token: str,
    caller_account: str | None,
    origin: str | None,
    referer: str | None,
) -> dict[str, Any]:
    """Returns what a player needs to show the video (API.md "Embed and playback")."""
    doc = await _embeddable(
        ctx, embed_token=embed_token, caller_account=caller_account, origin=origin, referer=referer
    )
    token = ctx.urls.playback_token(doc["_id"]) if doc["status"] == "ready" else None
    preset_id = doc.get("preset_id")
    preset = await ctx.public.preset(doc["account_id"], preset_id) if preset_id else None
    return {
        "video_id": doc["_id"],
        "title": doc["title"],
        "status": doc["status"],
        "duration_seconds": doc.get("duration_seconds"),
        "width": doc.get("width"),
        "height": doc.get("height"),
        "thumbnail_url": ctx.urls.play(token, THUMBNAIL) if token else None,
        "hls_url": ctx.urls.play(token, MASTER_PLAYLIST) if token else None,
        "subtitles": _subtitles(doc, ctx.urls, token),
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
    doc = await _embeddable(
        ctx, embed_token=embed_token, caller_account=caller_account, origin=origin, referer=referer
    )
    if doc["status"] != "ready":
        raise VideoNotReady()
    video_id = doc["_id"]
    event = Event.of(
        VideoViewed(video_id=video_id, session_id=session_id),
        account_id=doc["account_id"],
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


async def playable_video(ctx: MediaContext, grant: PlaybackGrant) -> Doc:
    """Returns the ready video a valid playback token names; NotFound when it is gone."""
    doc = await ctx.public.by_id(grant.video_id)
    if doc is None or doc["status"] != "ready":
        raise NotFound("This video is not available.")
    return doc
