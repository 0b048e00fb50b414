"""Media reads JSON bodies with the common reader: a recursion bomb is 400 `bad_request` (never
a 500), JSON that is not an object is 422 `validation_error`, on video PUT and view reports."""

from __future__ import annotations

from tests.media.conftest import Media, caller_headers, fake_ready
from tests.support.assertions import assert_error

NESTED = b"[" * 5000 + b"]" * 5000
NESTED_IN_OBJECT = b'{"title": ' + b"[" * 5000 + b"]" * 5000 + b"}"
TOO_DEEP = b'{"title": ' + b"[" * 40 + b"]" * 40 + b"}"


async def test_video_put(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    url, headers = f"/api/v1/videos/{video['id']}", caller_headers("acct_a")
    for body in (NESTED, NESTED_IN_OBJECT, TOO_DEEP):
        assert_error(await media.client.put(url, headers=headers, content=body), 400, "bad_request")
    for body in (b"[]", b"5", b'"x"', b"null"):
        error = assert_error(
            await media.client.put(url, headers=headers, content=body), 422, "validation_error"
        )
        assert error["details"]["errors"][0]["loc"] == ["body"]
    changed = await media.client.put(url, headers=headers, content=b'{"title": "still fine"}')
    assert changed.status_code == 200, changed.text


async def test_view_reports(media: Media) -> None:
    video = await fake_ready(media, "acct_a")
    url = f"/api/v1/embed/{video['embed_token']}/views"
    for body in (NESTED, NESTED_IN_OBJECT, TOO_DEEP):
        assert_error(await media.client.post(url, content=body), 400, "bad_request")
    assert_error(await media.client.post(url, content=b"[]"), 422, "validation_error")
    assert (await media.client.post(url)).status_code == 202  # no body: {}
