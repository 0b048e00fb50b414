"""Every operation of the public API as a request description (`Op`), written once for both
clients: `Client` and `AsyncClient` only send them. `OPERATIONS` maps each (method, path
template) to the client method's name; tests/client checks it against the served OpenAPI
document so a new endpoint without a method fails the build."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from . import models as m
from .uploads import ChunkBody

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class FilePart:
    """A file sent as a multipart field; opened again for each attempt."""

    field: str
    path: Path
    filename: str
    content_type: str = "application/octet-stream"
    on_read: Callable[[int], None] | None = None


@dataclass(frozen=True)
class Op(Generic[T]):
    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    # Safe to send again when the answer was lost: GET/PUT/DELETE, chunks and complete.
    idempotent: bool
    params: Mapping[str, Any] | None = None
    json: Any = None
    content: bytes | ChunkBody | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    data: Mapping[str, str] | None = None
    file: FilePart | None = None


OPERATIONS: dict[tuple[str, str], str] = {}


def endpoint(method: str, template: str) -> Callable[[F], F]:
    """Registers the decorated builder as the client method for `method template`."""

    def register(builder: F) -> F:
        OPERATIONS[(method, template)] = builder.__name__
        return builder

    return register


def model(cls: type[M]) -> Callable[[httpx.Response], M]:
    return lambda response: cls.model_validate_json(response.content)


def page_of(cls: type[M]) -> Callable[[httpx.Response], m.Page[M]]:
    return lambda response: m.Page[cls].model_validate_json(response.content)  # type: ignore[valid-type]


def nothing(response: httpx.Response) -> None:
    return None


def raw(response: httpx.Response) -> bytes:
    return response.content


def seg(value: str) -> str:
    """One path segment, escaped (an id can never change the route)."""
    return quote(value, safe="")


def _fields(**values: Any) -> dict[str, Any]:
    """The given fields that are not None (PUT bodies change only what is given)."""
    return {k: v for k, v in values.items() if v is not None}


def _paging(page: int, per_page: int) -> dict[str, int]:
    return {"page": page, "per_page": per_page}


# -- auth, account, keys -------------------------------------------------------------------


@endpoint("POST", "/api/v1/auth/login")
def login(email: str, password: str) -> Op[m.Token]:
    body = {"email": email, "password": password}
    return Op("POST", "/api/v1/auth/login", model(m.Token), False, json=body)


@endpoint("GET", "/api/v1/account")
def get_account() -> Op[m.Account]:
    return Op("GET", "/api/v1/account", model(m.Account), True)


@endpoint("GET", "/api/v1/api-keys")
def list_api_keys() -> Op[m.ApiKeyList]:
    return Op("GET", "/api/v1/api-keys", model(m.ApiKeyList), True)


@endpoint("POST", "/api/v1/api-keys")
def create_api_key(name: str) -> Op[m.ApiKeyCreated]:
    return Op("POST", "/api/v1/api-keys", model(m.ApiKeyCreated), False, json={"name": name})


@endpoint("DELETE", "/api/v1/api-keys/{key_id}")
def delete_api_key(key_id: str) -> Op[None]:
    return Op("DELETE", f"/api/v1/api-keys/{seg(key_id)}", nothing, True)


# -- videos --------------------------------------------------------------------------------


@endpoint("GET", "/api/v1/videos")
def list_videos(page: int = 1, per_page: int = 20) -> Op[m.Page[m.Video]]:
    return Op("GET", "/api/v1/videos", page_of(m.Video), True, params=_paging(page, per_page))


@endpoint("GET", "/api/v1/videos/{video_id}")
def get_video(video_id: str) -> Op[m.Video]:
    return Op("GET", f"/api/v1/videos/{seg(video_id)}", model(m.Video), True)


@endpoint("PUT", "/api/v1/videos/{video_id}")
def update_video(
    video_id: str,
    *,
    title: str | None = None,
    allowed_domains: list[str] | None = None,
    visibility: str | None = None,
    preset_id: str | None = None,
) -> Op[m.Video]:
    body = _fields(
        title=title, allowed_domains=allowed_domains, visibility=visibility, preset_id=preset_id
    )
    return Op("PUT", f"/api/v1/videos/{seg(video_id)}", model(m.Video), True, json=body)


@endpoint("DELETE", "/api/v1/videos/{video_id}")
def delete_video(video_id: str) -> Op[None]:
    return Op("DELETE", f"/api/v1/videos/{seg(video_id)}", nothing, True)


# -- uploads -------------------------------------------------------------------------------


@endpoint("POST", "/api/v1/upload")
def upload_direct(
    path: Path, *, title: str | None = None, on_read: Callable[[int], None] | None = None
) -> Op[m.VideoCreated]:
    part = FilePart("file", path, path.name, on_read=on_read)
    data = _fields(title=title)
    return Op("POST", "/api/v1/upload", model(m.VideoCreated), False, data=data, file=part)


@endpoint("POST", "/api/v1/upload/init")
def init_upload(filename: str, size: int, *, title: str | None = None) -> Op[m.UploadInit]:
    body = _fields(filename=filename, size=size, title=title)
    return Op("POST", "/api/v1/upload/init", model(m.UploadInit), False, json=body)


@endpoint("POST", "/api/v1/upload/chunk")
def upload_chunk(
    upload_id: str, index: int, body: bytes | memoryview, *, sha256: str | None = None
) -> Op[m.ChunkAccepted]:
    content = ChunkBody(body) if isinstance(body, memoryview) else body
    headers = {
        "X-Upload-ID": upload_id,
        "X-Chunk-Index": str(index),
        "Content-Type": "application/octet-stream",
        "Content-Length": str(len(content)),
    }
    if sha256 is not None:
        headers["X-Chunk-SHA256"] = sha256
    return Op(
        "POST",
        "/api/v1/upload/chunk",
        model(m.ChunkAccepted),
        True,
        content=content,
        headers=headers,
    )


@endpoint("GET", "/api/v1/upload/{upload_id}")
def get_upload(upload_id: str) -> Op[m.UploadStatus]:
    return Op("GET", f"/api/v1/upload/{seg(upload_id)}", model(m.UploadStatus), True)


@endpoint("DELETE", "/api/v1/upload/{upload_id}")
def abort_upload(upload_id: str) -> Op[None]:
    return Op("DELETE", f"/api/v1/upload/{seg(upload_id)}", nothing, True)


@endpoint("POST", "/api/v1/upload/complete")
def complete_upload(upload_id: str) -> Op[m.VideoCreated]:
    body = {"upload_id": upload_id}
    return Op("POST", "/api/v1/upload/complete", model(m.VideoCreated), True, json=body)


# -- embed and playback (public) -----------------------------------------------------------


@endpoint("GET", "/api/v1/embed/{token}")
def get_embed(token: str) -> Op[m.Embed]:
    return Op("GET", f"/api/v1/embed/{seg(token)}", model(m.Embed), True)


@endpoint("POST", "/api/v1/embed/{token}/views")
def report_view(token: str, *, session_id: str | None = None) -> Op[m.ViewAccepted]:
    body = _fields(session_id=session_id)
    return Op("POST", f"/api/v1/embed/{seg(token)}/views", model(m.ViewAccepted), False, json=body)


def _play_path(url_or_token: str, file_path: str) -> str:
    if url_or_token.startswith(("http://", "https://", "/play/")):
        # An `hls_url` as the API gives it: its path, with `file_path` replacing the last part.
        path = httpx.URL(url_or_token).path
        base = path.rsplit("/", 1)[0]
        return f"{base}/{file_path}" if file_path else path
    return f"/play/{seg(url_or_token)}/{file_path}"


@endpoint("GET", "/play/{playback_token}/{file_path}")
def play(playback_token: str, file_path: str = "master.m3u8") -> Op[bytes]:
    """A playlist, segment, thumbnail or subtitle file (`playback_token` may be an `hls_url`)."""
    return Op("GET", _play_path(playback_token, file_path), raw, True)


@endpoint("HEAD", "/play/{playback_token}/{file_path}")
def play_head(playback_token: str, file_path: str = "master.m3u8") -> Op[httpx.Headers]:
    return Op("HEAD", _play_path(playback_token, file_path), lambda r: r.headers, True)


# -- stats ---------------------------------------------------------------------------------


@endpoint("GET", "/api/v1/stats")
def get_stats() -> Op[m.Stats]:
    return Op("GET", "/api/v1/stats", model(m.Stats), True)


@endpoint("GET", "/api/v1/stats/thresholds")
def get_thresholds() -> Op[m.Thresholds]:
    return Op("GET", "/api/v1/stats/thresholds", model(m.Thresholds), True)


@endpoint("PUT", "/api/v1/stats/thresholds")
def set_thresholds(views: list[int]) -> Op[m.Thresholds]:
    body = {"views": views}
    return Op("PUT", "/api/v1/stats/thresholds", model(m.Thresholds), True, json=body)


# -- subtitles (Enterprise) ----------------------------------------------------------------


@endpoint("GET", "/api/v1/videos/{video_id}/subtitles")
def list_subtitles(video_id: str) -> Op[Any]:
    return Op("GET", f"/api/v1/videos/{seg(video_id)}/subtitles", lambda r: r.json(), True)


@endpoint("POST", "/api/v1/videos/{video_id}/subtitles")
def add_subtitle(
    video_id: str,
    path: Path,
    *,
    language: str,
    label: str | None = None,
    translate_to: list[str] | None = None,
) -> Op[m.Subtitle]:
    data = _fields(
        language=language,
        label=label,
        translate_to=",".join(translate_to) if translate_to else None,
    )
    part = FilePart("file", path, path.name, "text/vtt")
    url = f"/api/v1/videos/{seg(video_id)}/subtitles"
    return Op("POST", url, model(m.Subtitle), False, data=data, file=part)


@endpoint("DELETE", "/api/v1/videos/{video_id}/subtitles/{subtitle_id}")
def delete_subtitle(video_id: str, subtitle_id: str) -> Op[None]:
    url = f"/api/v1/videos/{seg(video_id)}/subtitles/{seg(subtitle_id)}"
    return Op("DELETE", url, nothing, True)


# -- presets (Enterprise) ------------------------------------------------------------------


@endpoint("GET", "/api/v1/presets")
def list_presets(page: int = 1, per_page: int = 20) -> Op[m.Page[m.Preset]]:
    return Op("GET", "/api/v1/presets", page_of(m.Preset), True, params=_paging(page, per_page))


@endpoint("POST", "/api/v1/presets")
def create_preset(name: str, **settings: Any) -> Op[m.Preset]:
    body = {"name": name, **_fields(**settings)}
    return Op("POST", "/api/v1/presets", model(m.Preset), False, json=body)


@endpoint("GET", "/api/v1/presets/{preset_id}")
def get_preset(preset_id: str) -> Op[m.Preset]:
    return Op("GET", f"/api/v1/presets/{seg(preset_id)}", model(m.Preset), True)


@endpoint("PUT", "/api/v1/presets/{preset_id}")
def update_preset(preset_id: str, **settings: Any) -> Op[m.Preset]:
    url = f"/api/v1/presets/{seg(preset_id)}"
    return Op("PUT", url, model(m.Preset), True, json=_fields(**settings))


@endpoint("DELETE", "/api/v1/presets/{preset_id}")
def delete_preset(preset_id: str) -> Op[None]:
    return Op("DELETE", f"/api/v1/presets/{seg(preset_id)}", nothing, True)


# -- webhooks (Enterprise) -----------------------------------------------------------------


@endpoint("GET", "/api/v1/webhooks")
def list_webhooks(page: int = 1, per_page: int = 20) -> Op[m.Page[m.Webhook]]:
    return Op("GET", "/api/v1/webhooks", page_of(m.Webhook), True, params=_paging(page, per_page))


@endpoint("POST", "/api/v1/webhooks")
def create_webhook(
    url: str, *, events: list[str] | None = None, description: str | None = None
) -> Op[m.WebhookCreated]:
    body = _fields(url=url, events=events, description=description)
    return Op("POST", "/api/v1/webhooks", model(m.WebhookCreated), False, json=body)


@endpoint("GET", "/api/v1/webhooks/{webhook_id}")
def get_webhook(webhook_id: str) -> Op[m.Webhook]:
    return Op("GET", f"/api/v1/webhooks/{seg(webhook_id)}", model(m.Webhook), True)


@endpoint("PUT", "/api/v1/webhooks/{webhook_id}")
def update_webhook(
    webhook_id: str,
    *,
    url: str | None = None,
    events: list[str] | None = None,
    enabled: bool | None = None,
    description: str | None = None,
) -> Op[m.Webhook]:
    body = _fields(url=url, events=events, enabled=enabled, description=description)
    return Op("PUT", f"/api/v1/webhooks/{seg(webhook_id)}", model(m.Webhook), True, json=body)


@endpoint("DELETE", "/api/v1/webhooks/{webhook_id}")
def delete_webhook(webhook_id: str) -> Op[None]:
    return Op("DELETE", f"/api/v1/webhooks/{seg(webhook_id)}", nothing, True)


@endpoint("GET", "/api/v1/webhooks/{webhook_id}/deliveries")
def list_deliveries(webhook_id: str, page: int = 1, per_page: int = 20) -> Op[m.Page[m.Delivery]]:
    url = f"/api/v1/webhooks/{seg(webhook_id)}/deliveries"
    return Op("GET", url, page_of(m.Delivery), True, params=_paging(page, per_page))


@endpoint("POST", "/api/v1/webhooks/deliveries/{delivery_id}/retry")
def retry_delivery(delivery_id: str) -> Op[m.Delivery]:
    url = f"/api/v1/webhooks/deliveries/{seg(delivery_id)}/retry"
    return Op("POST", url, model(m.Delivery), False)
