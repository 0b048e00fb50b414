"""Public embed metadata, view reports and `/play/<token>/…` (access rules, tokens, ranges)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.media.conftest import (
    MASTER,
    PLAYBACK_SECRET,
    SEGMENT,
    Media,
    caller_headers,
    fake_ready,
)
from tests.support.assertions import assert_error, eventually

from avc_common.ids import new_id
from avc_media.playback import mint_playback_token

EMBED_FIELDS = [
    "video_id",
    "title",
    "status",
    "duration_seconds",
    "width",
    "height",
    "thumbnail_url",
    "hls_url",
    "subtitles",
    "preset",
]


async def _set(media: Media, video: dict[str, Any], **changes: Any) -> None:
    response = await media.client.put(
        f"/api/v1/videos/{video['id']}", headers=caller_headers("acct_a"), json=changes
    )
    assert response.status_code == 200, response.text


def _token(url: str) -> str:
    return url.split("/")[2]


async def test_public_embed_metadata_needs_no_credentials(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    response = await media.client.get(f"/api/v1/embed/{video['embed_token']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == EMBED_FIELDS
    assert body["video_id"] == video["id"]
    assert body["status"] == "ready"
    assert (body["duration_seconds"], body["width"], body["height"]) == (6.0, 640, 360)
    assert body["hls_url"].startswith("/play/")
    assert body["hls_url"].endswith("/master.m3u8")
    assert body["thumbnail_url"].endswith("/thumbnail.jpg")
    assert body["subtitles"] == []
    assert body["preset"] is None
    assert response.headers["cache-control"] == "no-store"
    master = await media.client.get(body["hls_url"])
    assert master.status_code == 200
    assert master.text == MASTER


async def test_embed_of_a_processing_video_has_no_media_urls(media: Media) -> None:
    registered = (await media.register("acct_a")).json()
    body = (await media.client.get(f"/api/v1/embed/{registered['embed_token']}")).json()
    assert body["status"] == "processing"
    assert body["hls_url"] is None
    assert body["thumbnail_url"] is None
    assert body["duration_seconds"] is None
    views = await media.client.post(f"/api/v1/embed/{registered['embed_token']}/views")
    assert_error(views, 409, "video_not_ready")


async def test_unknown_embed_tokens_are_not_found(media: Media) -> None:
    assert_error(await media.client.get("/api/v1/embed/nope"), 404, "not_found")
    assert_error(await media.client.get("/api/v1/embed/" + "x" * 300), 404, "not_found")
    assert_error(await media.client.post("/api/v1/embed/nope/views"), 404, "not_found")


async def test_absolute_urls_with_a_public_base_url(make_media: Any) -> None:
    async with make_media(public_base_url="https://video.example.com/") as media:
        video = await fake_ready(media, "acct_a")
        assert video["hls_url"].startswith("https://video.example.com/play/")
        assert video["embed_url"] == (
            f"https://video.example.com/api/v1/embed/{video['embed_token']}"
        )


async def test_the_embed_carries_the_preset(media: Media) -> None:
    preset_id = new_id("pre")
    await media.app.state.documents.collection("presets").insert_one(
        {"_id": preset_id, "account_id": "acct_a", "name": "Brand", "autoplay": True}
    )
    video = await fake_ready(media, "acct_a")
    await _set(media, video, preset_id=preset_id)
    body = (await media.client.get(f"/api/v1/embed/{video['embed_token']}")).json()
    assert body["preset"] == {"id": preset_id, "name": "Brand", "autoplay": True}


# ---- allowed domains -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({"Origin": "https://example.com"}, True),
        ({"Origin": "https://EXAMPLE.com:8443"}, True),
        ({"Origin": "https://www.example.com"}, False),  # exact entries match that host only
        ({"Origin": "https://a.videos.test"}, True),  # *.videos.test
        ({"Origin": "https://a.b.videos.test"}, True),  # any depth
        ({"Origin": "https://videos.test"}, False),  # the wildcard does not cover the apex
        ({"Origin": "https://evilvideos.test"}, False),
        ({"Origin": "https://videos.test.evil.com"}, False),
        ({"Origin": "https://evil.com"}, False),
        ({"Referer": "https://example.com/page?x=1"}, True),  # no Origin: Referer
        ({"Referer": "https://evil.com/"}, False),
        ({"Origin": "https://evil.com", "Referer": "https://example.com/"}, False),  # Origin first
        ({"Origin": "null", "Referer": "https://example.com/"}, True),
        ({"Origin": "null"}, False),
        ({}, False),  # neither header
        ({"Referer": "not a url"}, False),
    ],
)
async def test_allowed_domains(media: Media, headers: dict[str, str], allowed: bool) -> None:
    video = await fake_ready(media, "acct_a")
    await _set(media, video, allowed_domains=["example.com", "*.videos.test"])
    response = await media.client.get(f"/api/v1/embed/{video['embed_token']}", headers=headers)
    views = await media.client.post(
        f"/api/v1/embed/{video['embed_token']}/views", headers=headers, json={}
    )
    if allowed:
        assert response.status_code == 200
        assert views.status_code == 202
    else:
        assert_error(response, 403, "domain_not_allowed")
        assert_error(views, 403, "domain_not_allowed")


async def test_no_allowed_domains_means_anywhere(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    for headers in ({}, {"Origin": "https://anything.example"}, {"Origin": "null"}):
        response = await media.client.get(f"/api/v1/embed/{video['embed_token']}", headers=headers)
        assert response.status_code == 200


# ---- private videos ------------------------------------------------------------------------


async def test_private_videos_need_their_owner(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    await _set(media, video, visibility="private")
    url = f"/api/v1/embed/{video['embed_token']}"
    assert_error(await media.client.get(url), 404, "not_found")
    assert_error(await media.client.get(url, headers=caller_headers("acct_b")), 404, "not_found")
    assert_error(await media.client.post(url + "/views"), 404, "not_found")
    owner = await media.client.get(url, headers=caller_headers("acct_a"))
    assert owner.status_code == 200
    # Private playback responses must not be kept by shared caches.
    segment = await media.client.get(
        owner.json()["hls_url"].replace("master.m3u8", "360p/seg_00000.ts")
    )
    assert segment.headers["cache-control"].startswith("private")
    # A token that is present but invalid is refused, never taken as anonymous.
    forged = await media.client.get(url, headers={"X-AVC-Internal-Token": "forged"})
    assert_error(forged, 401, "unauthorized")
    # The domain rule applies to the owner too.
    await _set(media, video, allowed_domains=["example.com"])
    assert_error(
        await media.client.get(url, headers=caller_headers("acct_a")), 403, "domain_not_allowed"
    )


# ---- views ---------------------------------------------------------------------------------


async def test_one_view_per_session_per_video_per_30_minutes(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    other = await fake_ready(media, "acct_a")
    url = f"/api/v1/embed/{video['embed_token']}/views"

    first = await media.client.post(url, json={"session_id": "s-1"})
    assert first.status_code == 202
    assert first.json() == {"counted": True}
    again = await media.client.post(url, json={"session_id": "s-1"})
    assert again.status_code == 202
    assert again.json() == {"counted": False}
    assert (await media.client.post(url, json={"session_id": "s-2"})).json()["counted"]
    other_url = f"/api/v1/embed/{other['embed_token']}/views"
    assert (await media.client.post(other_url, json={"session_id": "s-1"})).json()["counted"]
    # Without a session id every call counts; bodies may be empty or form-encoded JSON.
    assert (await media.client.post(url)).json()["counted"]
    assert (
        await media.client.post(
            url,
            content=b"{}",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    ).json()["counted"]

    await eventually(lambda: len(media.of_type("video.viewed")) == 5)
    viewed = media.of_type("video.viewed")
    assert {e.account_id for e in viewed} == {"acct_a"}
    by_video = [(e.data["video_id"], e.data["session_id"]) for e in viewed]
    assert by_video.count((video["id"], "s-1")) == 1
    assert by_video.count((video["id"], None)) == 2

    # 30 minutes later the same session counts again.
    views = media.app.state.documents.collection("view_sessions")
    from datetime import timedelta

    from avc_common.timeutil import utcnow

    await views.update_many({}, {"$set": {"counted_at": utcnow() - timedelta(minutes=31)}})
    assert (await media.client.post(url, json={"session_id": "s-1"})).json()["counted"]
    assert not (await media.client.post(url, json={"session_id": "s-1"})).json()["counted"]

    for bad in ({"session_id": ""}, {"session_id": "x" * 129}, {"session_id": 5}):
        assert_error(await media.client.post(url, json=bad), 422, "validation_error")


# ---- playback tokens and files -------------------------------------------------------------


async def test_playlists_segments_and_poster_have_their_types_and_cache_headers(
    media: Media,
) -> None:
    video = await fake_ready(media, "acct_a")
    base = video["hls_url"].removesuffix("master.m3u8")
    master = await media.client.get(base + "master.m3u8")
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    assert master.headers["cache-control"] == "public, max-age=10"
    playlist = await media.client.get(base + "360p/index.m3u8")
    assert playlist.headers["content-type"] == "application/vnd.apple.mpegurl"
    segment = await media.client.get(base + "360p/seg_00000.ts")
    assert segment.status_code == 200
    assert segment.content == SEGMENT
    assert segment.headers["content-type"] == "video/mp2t"
    assert segment.headers["accept-ranges"] == "bytes"
    assert segment.headers["content-length"] == str(len(SEGMENT))
    cache = segment.headers["cache-control"]
    assert cache.startswith("public, max-age=")
    assert cache.endswith(", immutable")
    # Long, but never beyond the token's own lifetime (6 h by default).
    assert 6 * 3600 - 60 < int(cache.split("max-age=")[1].split(",")[0]) <= 6 * 3600
    poster = await media.client.get(video["thumbnail_url"])
    assert poster.headers["content-type"] == "image/jpeg"
    assert "immutable" in poster.headers["cache-control"]
    assert segment.headers["etag"]
    cached = await media.client.get(
        base + "360p/seg_00000.ts", headers={"If-None-Match": segment.headers["etag"]}
    )
    assert cached.status_code == 304
    assert cached.content == b""


async def test_tampered_and_expired_playback_tokens_are_refused(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    token = _token(video["hls_url"])
    video_id, expires, signature = token.split(".")
    other = await fake_ready(media, "acct_a")
    tampered = [
        f"{video_id}.{int(expires) + 1000}.{signature}",  # longer life
        f"{other['id']}.{expires}.{signature}",  # another video
        f"{video_id}.{expires}.{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}",
        f"{video_id}.{expires}",
        "garbage",
        mint_playback_token(video_id, secret=b"k" * 48, ttl_seconds=600),  # another key
    ]
    for bad in tampered:
        response = await media.client.get(f"/play/{bad}/master.m3u8")
        assert_error(response, 403, "invalid_playback_token")
    expired = mint_playback_token(
        video_id, secret=PLAYBACK_SECRET.encode(), ttl_seconds=60, now=time.time() - 120
    )
    assert_error(
        await media.client.get(f"/play/{expired}/master.m3u8"), 403, "playback_token_expired"
    )
    head = await media.client.head(f"/play/{expired}/master.m3u8")
    assert head.status_code == 403


async def test_paths_outside_the_video_cannot_be_reached(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    other = await fake_ready(media, "acct_a")
    await media.objects.put(f"sources/{video['id']}/original", b"the original upload")
    token = _token(video["hls_url"])
    for path in (
        "../sources/original",
        "..%2F..%2Fsources%2Foriginal",
        f"../{other['id']}/master.m3u8",
        "%2e%2e/%2e%2e/sources/x/original",
        "360p/../../master.m3u8",
        ".hidden.m3u8",
        "original",
        "360p/seg_00000.exe",
        "a/b/c/d.ts",
        "360p//seg_00000.ts",
        "360p/seg_99999.ts",
    ):
        response = await media.client.get(f"/play/{token}/{path}")
        # (httpx folds `..` segments itself: `/play/master.m3u8` then redirects to a slash.)
        assert response.status_code in (307, 403, 404), (path, response.status_code)
        assert b"the original upload" not in response.content


async def test_byte_ranges(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    url = video["hls_url"].replace("master.m3u8", "360p/seg_00000.ts")
    size = len(SEGMENT)

    async def ranged(value: str, **extra: str) -> Any:
        return await media.client.get(url, headers={"Range": value, **extra})

    part = await ranged("bytes=0-99")
    assert part.status_code == 206
    assert part.content == SEGMENT[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{size}"
    assert part.headers["content-length"] == "100"
    assert part.headers["accept-ranges"] == "bytes"
    middle = await ranged("bytes=1000-1999")
    assert middle.content == SEGMENT[1000:2000]
    tail = await ranged("bytes=10000-")
    assert tail.content == SEGMENT[10000:]
    assert tail.headers["content-range"] == f"bytes 10000-{size - 1}/{size}"
    suffix = await ranged("bytes=-240")
    assert suffix.content == SEGMENT[-240:]
    clamped = await ranged(f"bytes=10200-{size + 500}")
    assert clamped.content == SEGMENT[10200:]
    assert clamped.headers["content-range"] == f"bytes 10200-{size - 1}/{size}"

    for unsatisfiable in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        response = await ranged(unsatisfiable)
        assert_error(response, 416, "range_not_satisfiable")
        assert response.headers["content-range"] == f"bytes */{size}"

    # Syntax this server does not serve as ranges: the whole file, 200.
    for ignored in ("bytes=0-1,5-6", "items=0-5", "bytes=9-3", "bytes=abc"):
        response = await ranged(ignored)
        assert response.status_code == 200
        assert response.content == SEGMENT

    etag = part.headers["etag"]
    assert (await ranged("bytes=0-9", **{"If-Range": etag})).status_code == 206
    stale = await ranged("bytes=0-9", **{"If-Range": '"something-else"'})
    assert stale.status_code == 200
    assert stale.content == SEGMENT

    head = await media.client.head(url, headers={"Range": "bytes=0-99"})
    assert head.status_code == 206
    assert head.headers["content-length"] == "100"
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    assert head.content == b""
    head_all = await media.client.head(url)
    assert head_all.status_code == 200
    assert head_all.headers["content-length"] == str(size)


async def test_playback_stops_when_the_video_is_deleted(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    response = await media.client.delete(
        f"/api/v1/videos/{video['id']}", headers=caller_headers("acct_a")
    )
    assert response.status_code == 204
    assert_error(await media.client.get(video["hls_url"]), 404, "not_found")
    assert_error(await media.client.get(f"/api/v1/embed/{video['embed_token']}"), 404, "not_found")
