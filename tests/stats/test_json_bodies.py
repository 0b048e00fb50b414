"""Stats reads JSON bodies with the common reader: a recursion bomb on thresholds PUT is 400
`bad_request` (never a 500), JSON that is not an object is 422 `validation_error`."""

from __future__ import annotations

from tests.support.assertions import assert_error

from .conftest import StatsHarness, auth

URL = "/api/v1/stats/thresholds"


async def test_thresholds_put(harness: StatsHarness) -> None:
    headers = auth(harness.account_id)
    for body in (
        b"[" * 5000 + b"]" * 5000,
        b'{"views": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"views": [' + b"[" * 40 + b"]" * 40 + b"]}",
    ):
        response = await harness.client.put(URL, headers=headers, content=body)
        assert_error(response, 400, "bad_request")
    response = await harness.client.put(URL, headers=headers, content=b"[]")
    body = assert_error(response, 422, "validation_error")
    assert body["details"]["errors"][0]["loc"] == ["body"]
    assert (await harness.client.get(URL, headers=headers)).json() == {"views": [100, 1000, 10000]}
