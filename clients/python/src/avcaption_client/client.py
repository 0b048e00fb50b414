"""`Client`: the whole public API over `httpx.Client` (`Client` is the async twin; both
send the same `operations`)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from . import models as m
from . import operations as ops
from . import uploads as up
from ._http import (
    RetryEvent,
    RetryHook,
    RetryPolicy,
    as_timeout,
    auth_headers,
    request_kwargs,
    resolve_api_url,
    user_agent,
)
from .errors import (
    ApiError,
    AvcError,
    ConnectionFailedError,
    GoneError,
    NotFoundError,
    UploadIncompleteError,
    error_from_response,
)

T = TypeVar("T")


class Client:
    """Async client of the AVCaption API.

    `api_key` (else `AVC_API_KEY`) or a `token` (JWT from `login`); `api_url` (else
    `AVC_API_URL`, else http://localhost:8080). `timeout` is seconds or an `httpx.Timeout`;
    `retry` says when calls are sent again (`RetryPolicy`); `on_retry` hears each retry.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        api_url: str | None = None,
        token: str | None = None,
        timeout: float | httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        on_retry: RetryHook | None = None,
        max_connections: int = 32,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = resolve_api_url(api_url)
        self.api_key = api_key if api_key is not None else os.environ.get("AVC_API_KEY")
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        self._http = httpx.Client(
            base_url=self.api_url,
            headers={"User-Agent": user_agent(), **auth_headers(self.api_key, token)},
            timeout=as_timeout(timeout),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=32),
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def use_token(self, token: str) -> None:
        """Authenticates the following calls with a JWT (from `login`) instead of the key."""
        self._http.headers.pop("X-API-Key", None)
        self._http.headers["Authorization"] = f"Bearer {token}"

    def call(self, op: ops.Op[T]) -> T:
        """Sends `op` (retried as `self.retry` allows) and returns its parsed answer."""
        attempt = 0
        while True:
            failure: Exception
            try:
                with request_kwargs(op) as kwargs:
                    response = self._http.request(**kwargs)
            except httpx.TransportError as exc:
                delay = self.retry.after_error(attempt, op, exc)
                if delay is None:
                    raise ConnectionFailedError(
                        f"{op.method} {op.path}: {type(exc).__name__}: {exc}"
                    ) from exc
                failure = exc
            else:
                if response.is_success:
                    return op.parse(response)
                error = error_from_response(response)
                delay = self.retry.after_response(attempt, op, error)
                if delay is None:
                    raise error
                failure = error
            if self.on_retry is not None:
                self.on_retry(RetryEvent(op.method, op.path, attempt + 1, delay, failure))
            time.sleep(delay)
            attempt += 1

    # -- auth, account, keys ---------------------------------------------------------------

    def login(self, email: str, password: str) -> m.Token:
        return self.call(ops.login(email, password))

    def get_account(self) -> m.Account:
        return self.call(ops.get_account())

    def list_api_keys(self) -> m.ApiKeyList:
        return self.call(ops.list_api_keys())

    def create_api_key(self, name: str) -> m.ApiKeyCreated:
        return self.call(ops.create_api_key(name))

    def delete_api_key(self, key_id: str) -> None:
        self.call(ops.delete_api_key(key_id))

    # -- videos ----------------------------------------------------------------------------

    def list_videos(self, page: int = 1, per_page: int = 20) -> m.Page[m.Video]:
        return self.call(ops.list_videos(page, per_page))

    def iter_videos(self, per_page: int = 100) -> Iterator[m.Video]:
        """Every video of the account, newest first, page after page."""
        page = 1
        while True:
            result = self.list_videos(page, per_page)
            yield from result.data
            if page >= result.total_pages:
                return
            page += 1

    def get_video(self, video_id: str) -> m.Video:
        return self.call(ops.get_video(video_id))

    def update_video(
        self,
        video_id: str,
        *,
        title: str | None = None,
        allowed_domains: list[str] | None = None,
        visibility: str | None = None,
        preset_id: str | None = None,
    ) -> m.Video:
        op = ops.update_video(
            video_id,
            title=title,
            allowed_domains=allowed_domains,
            visibility=visibility,
            preset_id=preset_id,
        )
        return self.call(op)

    def delete_video(self, video_id: str) -> None:
        self.call(ops.delete_video(video_id))

    def wait_for_video(
        self, video_id: str, *, timeout: float = 3600.0, interval: float = 2.0
    ) -> m.Video:
        """Polls until the video is `ready` or `failed` and returns it (TimeoutError after
        `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            video = self.get_video(video_id)
            if video.finished:
                return video
            if time.monotonic() + interval > deadline:
                raise TimeoutError(f"{video_id} still {video.status} after {timeout:.0f} s")
            time.sleep(interval)

    # -- uploads (single calls) ------------------------------------------------------------

    def upload_direct(
        self,
        path: str | Path,
        *,
        title: str | None = None,
        on_read: Callable[[int], None] | None = None,
    ) -> m.VideoCreated:
        return self.call(ops.upload_direct(Path(path), title=title, on_read=on_read))

    def init_upload(self, filename: str, size: int, *, title: str | None = None) -> m.UploadInit:
        return self.call(ops.init_upload(filename, size, title=title))

    def upload_chunk(
        self, upload_id: str, index: int, body: bytes | memoryview, *, sha256: str | None = None
    ) -> m.ChunkAccepted:
        return self.call(ops.upload_chunk(upload_id, index, body, sha256=sha256))

    def get_upload(self, upload_id: str) -> m.UploadStatus:
        return self.call(ops.get_upload(upload_id))

    def abort_upload(self, upload_id: str) -> None:
        self.call(ops.abort_upload(upload_id))

    def complete_upload(self, upload_id: str) -> m.VideoCreated:
        return self.call(ops.complete_upload(upload_id))

    # -- upload(path) ----------------------------------------------------------------------

    def upload(
        self,
        path: str | Path,
        *,
        title: str | None = None,
        parallel: int = up.DEFAULT_PARALLEL,
        progress: up.ProgressCallback | None = None,
        chunked: bool | None = None,
        direct_max: int = up.DIRECT_MAX_BYTES,
        state_dir: Path | None = None,
        resume: bool = True,
        max_rate: float | None = None,
        checksum: bool = True,
    ) -> up.UploadResult:
        """Uploads a file: one request up to `direct_max` bytes, else chunked with `parallel`
        chunks in flight, each with its SHA-256, resumable (see `avcaption_client.uploads`);
        `max_rate` caps the bytes per second;
        `checksum=False` leaves out the chunks' SHA-256 (the whole file's is still taken by the
        server)."""
        started = time.monotonic()
        source = Path(path)
        size = up.check_source(source)
        tracker = up.ProgressTracker(source, size, progress)
        pacer = up.Pacer(max_rate)
        if not up.use_chunked(size, chunked, direct_max):
            created = self.upload_direct(source, title=title, on_read=tracker.add)
            tracker.add(0, 1)
            return up.UploadResult(
                created.video_id,
                created.embed_token,
                created.status,
                source,
                size,
                False,
                seconds=time.monotonic() - started,
            )
        state_file = up.state_path(source, state_dir)
        restarted = False
        for _ in range(3):
            plan = self._plan(source, size, title, state_file, resume and not restarted)
            plan.checksum = checksum
            tracker.start(plan)
            try:
                if plan.completed_video is None:
                    sent = self._send_chunks(source, size, plan, parallel, tracker, pacer)
                    sent += self._finish(source, size, plan, parallel, tracker, pacer)
                else:
                    sent = 0
                created = self.complete_upload(plan.upload_id)
            except (GoneError, NotFoundError) as exc:
                if exc.code not in ("upload_expired", "upload_not_found"):
                    raise
                up.forget_state(state_file)  # expired or unknown: begin again cleanly
                restarted = True
                continue
            up.forget_state(state_file)
            return up.UploadResult(
                created.video_id,
                created.embed_token,
                created.status,
                source,
                size,
                True,
                upload_id=plan.upload_id,
                chunks_sent=sent,
                resumed=plan.resumed,
                restarted=restarted or plan.restarted,
                seconds=time.monotonic() - started,
            )
        raise AvcError(f"{source}: the upload kept expiring; giving up")

    def _plan(
        self, source: Path, size: int, title: str | None, state_file: Path, resume: bool
    ) -> up.ChunkPlan:
        """Resumes the stored upload when the server still has it, else starts one."""
        state = up.load_state(state_file) if resume else None
        restarted = state is not None
        if state is not None and state.matches(source, self.api_url):
            try:
                status = self.get_upload(state.upload_id)
            except ApiError as exc:
                if exc.code not in ("upload_expired", "upload_not_found"):
                    raise
            else:
                done = status.video_id if status.status == "completed" else None
                return up.ChunkPlan(
                    status.upload_id,
                    status.chunk_size,
                    status.total_chunks,
                    sorted(status.missing),
                    True,
                    state_file,
                    completed_video=done,
                )
        elif state is not None:
            # The file changed since: that upload can never complete to this file.
            with suppress(ApiError):
                self.abort_upload(state.upload_id)
        init = self.init_upload(source.name, size, title=title)
        state = up.new_state(
            source, self.api_url, init.upload_id, init.chunk_size, init.total_chunks
        )
        up.save_state(state_file, state)
        missing = list(range(init.total_chunks))
        return up.ChunkPlan(
            init.upload_id,
            init.chunk_size,
            init.total_chunks,
            missing,
            False,
            state_file,
            restarted=restarted,
        )

    def _send_chunks(
        self,
        source: Path,
        size: int,
        plan: up.ChunkPlan,
        parallel: int,
        tracker: up.ProgressTracker,
        pacer: up.Pacer,
        indexes: list[int] | None = None,
    ) -> int:
        """Sends the plan's missing chunks, `parallel` at a time; returns how many."""
        indexes = plan.missing if indexes is None else indexes
        fd = os.open(source, os.O_RDONLY)
        stop = threading.Event()

        buffers = threading.local()  # one chunk buffer per worker thread, reused

        def send(index: int) -> None:
            if stop.is_set():
                return
            buffer = getattr(buffers, "chunk", None)
            if buffer is None:
                buffer = buffers.chunk = bytearray(plan.chunk_size)
            body, digest = up.read_and_hash(fd, buffer, index, plan.chunk_size, size, plan.checksum)
            delay = pacer.reserve(len(body))
            if delay > 0:
                time.sleep(delay)
            self.upload_chunk(plan.upload_id, index, body, sha256=digest)
            tracker.add(len(body), 1)

        # Workers read their chunk only when they start it: memory stays `parallel` chunks.
        try:
            with ThreadPoolExecutor(max(1, parallel), thread_name_prefix="avc-chunk") as pool:
                futures = [pool.submit(send, index) for index in indexes]
                for future in as_completed(futures):
                    if future.exception() is not None:
                        stop.set()
                        for other in futures:
                            other.cancel()
                        future.result()
        finally:
            os.close(fd)
        count = len(indexes)
        return count

    def _finish(
        self,
        source: Path,
        size: int,
        plan: up.ChunkPlan,
        parallel: int,
        tracker: up.ProgressTracker,
        pacer: up.Pacer,
    ) -> int:
        """Asks the server what is missing before `complete` (a chunk lost to a crash or a
        concurrent run) and sends it; returns how many chunks that took."""
        sent = 0
        for _ in range(3):
            status = self.get_upload(plan.upload_id)
            if not status.missing or status.status != "open":
                return sent
            sent += self._send_chunks(source, size, plan, parallel, tracker, pacer, status.missing)
        raise UploadIncompleteError(
            f"chunks still missing after 3 rounds: {status.missing[:20]}",
            details={"missing": status.missing},
        )

    # -- embed and playback ----------------------------------------------------------------

    def get_embed(self, token: str) -> m.Embed:
        return self.call(ops.get_embed(token))

    def report_view(self, token: str, *, session_id: str | None = None) -> m.ViewAccepted:
        return self.call(ops.report_view(token, session_id=session_id))

    def play(self, playback_token: str, file_path: str = "master.m3u8") -> bytes:
        return self.call(ops.play(playback_token, file_path))

    def play_head(self, playback_token: str, file_path: str = "master.m3u8") -> httpx.Headers:
        return self.call(ops.play_head(playback_token, file_path))

    # -- stats -----------------------------------------------------------------------------

    def get_stats(self) -> m.Stats:
        return self.call(ops.get_stats())

    def get_thresholds(self) -> m.Thresholds:
        return self.call(ops.get_thresholds())

    def set_thresholds(self, views: list[int]) -> m.Thresholds:
        return self.call(ops.set_thresholds(views))

    # -- subtitles -------------------------------------------------------------------------

    def list_subtitles(self, video_id: str) -> Any:
        return self.call(ops.list_subtitles(video_id))

    def add_subtitle(
        self,
        video_id: str,
        path: str | Path,
        *,
        language: str,
        label: str | None = None,
        translate_to: list[str] | None = None,
    ) -> m.Subtitle:
        op = ops.add_subtitle(
            video_id, Path(path), language=language, label=label, translate_to=translate_to
        )
        return self.call(op)

    def delete_subtitle(self, video_id: str, subtitle_id: str) -> None:
        self.call(ops.delete_subtitle(video_id, subtitle_id))

    # -- presets ---------------------------------------------------------------------------

    def list_presets(self, page: int = 1, per_page: int = 20) -> m.Page[m.Preset]:
        return self.call(ops.list_presets(page, per_page))

    def create_preset(self, name: str, **settings: Any) -> m.Preset:
        return self.call(ops.create_preset(name, **settings))

    def get_preset(self, preset_id: str) -> m.Preset:
        return self.call(ops.get_preset(preset_id))

    def update_preset(self, preset_id: str, **settings: Any) -> m.Preset:
        return self.call(ops.update_preset(preset_id, **settings))

    def delete_preset(self, preset_id: str) -> None:
        self.call(ops.delete_preset(preset_id))

    # -- webhooks --------------------------------------------------------------------------

    def list_webhooks(self, page: int = 1, per_page: int = 20) -> m.Page[m.Webhook]:
        return self.call(ops.list_webhooks(page, per_page))

    def create_webhook(
        self, url: str, *, events: list[str] | None = None, description: str | None = None
    ) -> m.WebhookCreated:
        return self.call(ops.create_webhook(url, events=events, description=description))

    def get_webhook(self, webhook_id: str) -> m.Webhook:
        return self.call(ops.get_webhook(webhook_id))

    def update_webhook(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        events: list[str] | None = None,
        enabled: bool | None = None,
        description: str | None = None,
    ) -> m.Webhook:
        op = ops.update_webhook(
            webhook_id, url=url, events=events, enabled=enabled, description=description
        )
        return self.call(op)

    def delete_webhook(self, webhook_id: str) -> None:
        self.call(ops.delete_webhook(webhook_id))

    def list_deliveries(
        self, webhook_id: str, page: int = 1, per_page: int = 20
    ) -> m.Page[m.Delivery]:
        return self.call(ops.list_deliveries(webhook_id, page, per_page))

    def retry_delivery(self, delivery_id: str) -> m.Delivery:
        return self.call(ops.retry_delivery(delivery_id))
