"""Registration (upload → media), and the videos API: list, get, update, delete, tenancy."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.media.conftest import Media, caller_headers, fake_ready
from tests.support.assertions import assert_error, eventually

from avc_common.events import VideoDeleted
from avc_common.ids import is_id, new_id
from avc_common.objects import ObjectStore

VIDEO_FIELDS = [
    "id",
    "title",
    "filename",
    "status",
    "size_bytes",
    "sha256",
    "duration_seconds",
    "width",
    "height",
    "allowed_domains",
    "visibility",
    "embed_token",
    "embed_url",
    "hls_url",
    "thumbnail_url",
    "renditions",
    "subtitles",
    "preset_id",
    "error",
    "created_at",
    "updated_at",
]
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z$")


# ---- registration --------------------------------------------------------------------------


async def test_register_creates_a_processing_video_listed_at_once(media: Media) -> None:
    video_id = new_id("vid")
    response = await media.register(
        "acct_a", video_id=video_id, upload_id="upl_1", filename="lesson 1.mp4", title=None
    )
    assert response.status_code == 201
    body = response.json()
    assert body["video_id"] == video_id
    assert body["status"] == "processing"
    assert len(body["embed_token"]) >= 22  # >= 128 bits

    listed = await media.client.get("/api/v1/videos", headers=caller_headers("acct_a"))
    assert [v["id"] for v in listed.json()["data"]] == [video_id]
    video = listed.json()["data"][0]
    assert list(video) == VIDEO_FIELDS
    assert video["status"] == "processing"
    assert video["title"] == "lesson 1"  # no title: the file name without its extension
    assert video["filename"] == "lesson 1.mp4"
    assert video["embed_token"] == body["embed_token"]
    assert video["embed_url"] == f"/api/v1/embed/{body['embed_token']}"
    for unknown in ("duration_seconds", "width", "height", "hls_url", "thumbnail_url", "error"):
        assert video[unknown] is None
    assert video["renditions"] == []
    assert video["subtitles"] == []
    assert video["allowed_domains"] == []
    assert video["visibility"] == "public"
    assert video["preset_id"] is None
    assert RFC3339.match(video["created_at"])
    assert RFC3339.match(video["updated_at"])


async def test_register_is_idempotent_per_account_and_upload(media: Media) -> None:
    first = await media.register("acct_a", upload_id="upl_same")
    assert first.status_code == 201
    again = await media.register("acct_a", upload_id="upl_same")  # another video id, even
    assert again.status_code == 200
    assert again.json() == first.json()
    # Concurrent repeats all get the same video.
    answers = await asyncio.gather(
        *(media.register("acct_a", upload_id="upl_race") for _ in range(5))
    )
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 200, 201]
    assert len({a.json()["video_id"] for a in answers}) == 1
    # The same upload id in another account is another upload.
    other = await media.register("acct_b", upload_id="upl_same")
    assert other.status_code == 201
    assert other.json()["video_id"] != first.json()["video_id"]
    listed = await media.client.get("/api/v1/videos", headers=caller_headers("acct_a"))
    assert listed.json()["total"] == 2


async def test_register_refuses_a_video_id_used_by_another_upload(media: Media) -> None:
    video_id = new_id("vid")
    assert (await media.register("acct_a", video_id=video_id)).status_code == 201
    taken = await media.register("acct_a", video_id=video_id, upload_id="upl_other")
    assert_error(taken, 409, "video_id_taken")


async def test_register_validates_its_body(media: Media) -> None:
    headers = caller_headers("acct_a")
    good = {
        "video_id": new_id("vid"),
        "upload_id": "upl_1",
        "filename": "a.mp4",
        "title": "A",
        "size_bytes": 10,
        "sha256": "a" * 64,
    }
    good["source_key"] = f"sources/{good['video_id']}/original"
    url = "/internal/v1/videos/register"
    for change in (
        {"video_id": "not-an-id"},
        {"source_key": "sources/vid_other/original"},
        {"source_key": "../etc/passwd"},
        {"size_bytes": -1},
        {"sha256": "xyz"},
        {"filename": ""},
    ):
        response = await media.client.post(url, headers=headers, json={**good, **change})
        assert_error(response, 422, "validation_error")
    assert_error(await media.client.post(url, headers=headers, content=b"{"), 400, "bad_request")
    assert_error(await media.client.post(url, json=good), 401, "unauthorized")


async def test_json_bodies_are_accepted_whatever_the_content_type(media: Media) -> None:
    video_id = new_id("vid")
    body = (
        f'{{"video_id": "{video_id}", "upload_id": "u1", "filename": "a.mp4", "title": null,'
        f' "size_bytes": 1, "sha256": null, "source_key": "sources/{video_id}/original"}}'
    )
    response = await media.client.post(
        "/internal/v1/videos/register",
        headers={**caller_headers("acct_a"), "content-type": "application/x-www-form-urlencoded"},
        content=body,
    )
    assert response.status_code == 201, response.text
    update = await media.client.put(
        f"/api/v1/videos/{video_id}",
        headers={**caller_headers("acct_a"), "content-type": "application/x-www-form-urlencoded"},
        content=b'{"title": "From curl -d"}',
    )
    assert update.status_code == 200, update.text
    assert update.json()["title"] == "From curl -d"


# ---- list and get --------------------------------------------------------------------------


async def test_list_is_paginated_newest_first_with_a_stable_order(media: Media) -> None:
    ids = []
    for _ in range(7):
        ids.append((await media.register("acct_a")).json()["video_id"])
    await media.register("acct_b")
    # Same creation time for several: the id breaks the tie, so pages never overlap.
    coll = media.app.state.documents.collection("videos")
    same = (await coll.find_one({"_id": ids[0]}))["created_at"]
    for video_id in ids[2:5]:
        await coll.update_one({"_id": video_id}, {"$set": {"created_at": same}})

    headers = caller_headers("acct_a")
    pages = []
    for page in (1, 2, 3):
        response = await media.client.get(f"/api/v1/videos?page={page}&per_page=3", headers=headers)
        assert response.status_code == 200
        body = response.json()
        assert (body["page"], body["per_page"], body["total"], body["total_pages"]) == (
            page,
            3,
            7,
            3,
        )
        pages.append([v["id"] for v in body["data"]])
    flat = [video_id for page in pages for video_id in page]
    assert sorted(flat) == sorted(ids)
    assert [len(p) for p in pages] == [3, 3, 1]
    docs = {d["_id"]: d for d in await coll.find({"account_id": "acct_a"})}
    keys = [(docs[i]["created_at"], i) for i in flat]
    assert keys == sorted(keys, reverse=True)

    default = (await media.client.get("/api/v1/videos", headers=headers)).json()
    assert default["per_page"] == 20
    assert default["page"] == 1
    beyond = (await media.client.get("/api/v1/videos?page=9", headers=headers)).json()
    assert beyond["data"] == []
    assert beyond["total"] == 7
    for bad in ("per_page=0", "per_page=101", "page=0", "page=x"):
        response = await media.client.get(f"/api/v1/videos?{bad}", headers=headers)
        assert_error(response, 422, "validation_error")


async def test_an_empty_account_lists_nothing(media: Media) -> None:
    body = (await media.client.get("/api/v1/videos", headers=caller_headers("acct_z"))).json()
    assert body == {"data": [], "page": 1, "per_page": 20, "total": 0, "total_pages": 0}


async def test_videos_of_another_account_are_not_found(media: Media) -> None:
    video_id = (await media.register("acct_a")).json()["video_id"]
    other = caller_headers("acct_b")
    url = f"/api/v1/videos/{video_id}"
    assert_error(await media.client.get(url, headers=other), 404, "not_found")
    assert_error(await media.client.put(url, headers=other, json={"title": "x"}), 404, "not_found")
    assert_error(await media.client.delete(url, headers=other), 404, "not_found")
    # Exactly like an id that does not exist.
    missing = f"/api/v1/videos/{new_id('vid')}"
    assert_error(await media.client.get(missing, headers=other), 404, "not_found")
    assert_error(await media.client.get("/api/v1/videos/garbage", headers=other), 404, "not_found")
    # Still there for its owner.
    assert (await media.video("acct_a", video_id))["id"] == video_id


async def test_every_video_route_needs_the_gateway_token(media: Media) -> None:
    video_id = new_id("vid")
    for method, url in (
        ("GET", "/api/v1/videos"),
        ("GET", f"/api/v1/videos/{video_id}"),
        ("PUT", f"/api/v1/videos/{video_id}"),
        ("DELETE", f"/api/v1/videos/{video_id}"),
    ):
        response = await media.client.request(method, url, json={})
        assert_error(response, 401, "unauthorized")
        forged = await media.client.request(
            method, url, json={}, headers={"X-AVC-Internal-Token": "forged"}
        )
        assert_error(forged, 401, "unauthorized")


# ---- update --------------------------------------------------------------------------------


async def test_update_changes_only_what_was_sent(media: Media) -> None:
    video_id = (await media.register("acct_a")).json()["video_id"]
    url = f"/api/v1/videos/{video_id}"
    headers = caller_headers("acct_a")
    before = await media.video("acct_a", video_id)
    await asyncio.sleep(0.01)

    response = await media.client.put(
        url,
        headers=headers,
        json={
            "title": "  New title ",
            "allowed_domains": ["Example.com", "*.Example.org", "example.com", "bücher.de"],
            "visibility": "private",
        },
    )
    assert response.status_code == 200, response.text
    video = response.json()
    assert list(video) == VIDEO_FIELDS
    assert video["title"] == "New title"
    assert video["allowed_domains"] == ["example.com", "*.example.org", "xn--bcher-kva.de"]
    assert video["visibility"] == "private"
    assert video["updated_at"] > before["updated_at"]
    assert video["created_at"] == before["created_at"]

    # Omitted fields stay; an empty list means "anywhere" again.
    response = await media.client.put(url, headers=headers, json={"allowed_domains": []})
    assert response.json()["allowed_domains"] == []
    assert response.json()["title"] == "New title"
    assert response.json()["visibility"] == "private"
    assert (await media.client.put(url, headers=headers, json={})).json()["title"] == "New title"
    assert await media.video("acct_a", video_id) == {
        **response.json(),
        "updated_at": (await media.video("acct_a", video_id))["updated_at"],
    }


async def test_update_validates(media: Media) -> None:
    video_id = (await media.register("acct_a")).json()["video_id"]
    url = f"/api/v1/videos/{video_id}"
    headers = caller_headers("acct_a")
    for body in (
        {"visibility": "secret"},
        {"visibility": None},
        {"title": ""},
        {"title": "   "},
        {"title": None},
        {"title": 5},
        {"allowed_domains": "example.com"},
        {"allowed_domains": ["https://example.com"]},
        {"allowed_domains": ["example.com:8080"]},
        {"allowed_domains": ["exa mple.com"]},
        {"allowed_domains": ["*"]},
        {"allowed_domains": ["*.com"]},
        {"allowed_domains": ["a.*.example.com"]},
        {"allowed_domains": ["-bad.example.com"]},
        {"allowed_domains": [f"d{i}.example.com" for i in range(101)]},
        {"unknown_field": 1},
    ):
        response = await media.client.put(url, headers=headers, json=body)
        assert_error(response, 422, "validation_error")
    assert_error(
        await media.client.put(url, headers=headers, content=b"[1]"), 422, "validation_error"
    )
    assert_error(await media.client.put(url, headers=headers, content=b"nope"), 400, "bad_request")
    huge = b'{"title": "' + b"x" * 70_000 + b'"}'
    assert_error(
        await media.client.put(url, headers=headers, content=huge), 413, "payload_too_large"
    )
    # Unknown presets (or another account's) are refused; so is what cannot be a preset id.
    response = await media.client.put(url, headers=headers, json={"preset_id": new_id("pre")})
    assert_error(response, 422, "preset_not_found")
    response = await media.client.put(url, headers=headers, json={"preset_id": "garbage"})
    assert_error(response, 422, "preset_not_found")
    assert (await media.video("acct_a", video_id))["title"] == "A clip"


async def test_update_sets_and_clears_a_preset(media: Media) -> None:
    video_id = (await media.register("acct_a")).json()["video_id"]
    preset_id = new_id("pre")
    presets = media.app.state.documents.collection("presets")
    await presets.insert_one({"_id": preset_id, "account_id": "acct_a", "name": "Brand"})
    other_preset = new_id("pre")
    await presets.insert_one({"_id": other_preset, "account_id": "acct_b", "name": "Theirs"})
    url = f"/api/v1/videos/{video_id}"
    headers = caller_headers("acct_a")
    response = await media.client.put(url, headers=headers, json={"preset_id": preset_id})
    assert response.json()["preset_id"] == preset_id
    response = await media.client.put(url, headers=headers, json={"preset_id": other_preset})
    assert_error(response, 422, "preset_not_found")
    response = await media.client.put(url, headers=headers, json={"preset_id": None})
    assert response.json()["preset_id"] is None


# ---- delete --------------------------------------------------------------------------------


async def _sizes(objects: ObjectStore, prefix: str) -> int:
    return sum(o.size for o in await objects.list(prefix))


async def test_delete_removes_every_object_and_announces_the_bytes_freed(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    video_id = video["id"]
    source = b"s" * 5000
    await media.objects.put(f"sources/{video_id}/original", source)
    keeper = await fake_ready(media, "acct_a")  # another video's objects stay
    renditions = await _sizes(media.objects, f"videos/{video_id}")
    assert renditions > 10_000

    response = await media.client.delete(
        f"/api/v1/videos/{video_id}", headers=caller_headers("acct_a", request_id="del-1")
    )
    assert response.status_code == 204
    assert response.content == b""
    assert await media.objects.list(f"videos/{video_id}") == []
    assert await media.objects.list(f"sources/{video_id}") == []
    assert await media.objects.list(f"videos/{keeper['id']}") != []
    assert_error(
        await media.client.get(f"/api/v1/videos/{video_id}", headers=caller_headers("acct_a")),
        404,
        "not_found",
    )
    listed = await media.client.get("/api/v1/videos", headers=caller_headers("acct_a"))
    assert [v["id"] for v in listed.json()["data"]] == [keeper["id"]]
    again = await media.client.delete(
        f"/api/v1/videos/{video_id}", headers=caller_headers("acct_a")
    )
    assert_error(again, 404, "not_found")

    await eventually(lambda: bool(media.of_type("video.deleted")))
    [event] = media.of_type("video.deleted")
    assert event.account_id == "acct_a"
    assert event.request_id == "del-1"
    payload = event.payload()
    assert isinstance(payload, VideoDeleted)
    assert payload.video_id == video_id
    assert payload.status == "ready"
    assert payload.source_bytes == len(source)
    assert payload.renditions_bytes == renditions
    assert payload.bytes_freed == len(source) + renditions
    # The record is gone, not just hidden.
    assert await media.app.state.documents.collection("videos").find_one({"_id": video_id}) is None


async def test_an_interrupted_delete_is_finished_by_the_redrive(
    make_media: Any,
) -> None:
    async with make_media(worker=True) as media:
        video = await fake_ready(media, "acct_a")
        video_id = video["id"]
        # As if the API process died right after marking the video deleted.
        repo = media.app.state.media.videos
        assert await repo.start_delete("acct_a", video_id) is not None
        assert_error(
            await media.client.get(f"/api/v1/videos/{video_id}", headers=caller_headers("acct_a")),
            404,
            "not_found",
        )
        worker = media.worker_app.state.encode_worker
        coll = media.app.state.documents.collection("videos")
        await coll.update_one({"_id": video_id}, {"$set": {"deleted_at": _long_ago()}})
        counts = await worker.redrive_once()
        assert counts["deletes"] == 1
        assert await media.objects.list(f"videos/{video_id}") == []
        assert await coll.find_one({"_id": video_id}) is None
        await eventually(lambda: bool(media.of_type("video.deleted")))
        deleted = media.of_type("video.deleted")[0].payload()
        assert isinstance(deleted, VideoDeleted)
        assert deleted.renditions_bytes > 0


def _long_ago() -> Any:
    from datetime import timedelta

    from avc_common.timeutil import utcnow

    return utcnow() - timedelta(hours=1)


async def test_ids_are_well_formed(media: Media) -> None:
    body = (await media.register("acct_a")).json()
    assert is_id(body["video_id"], "vid")
