"""Stats reads JSON bodies with the common reader: a recursion bomb on thresholds PUT is 400
`bad_request` (never a 500), JSON that is not an object is 422 `validation_error`."""

from __future__ import annotations

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
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "bad_request"
        assert response.json()["request_id"] == response.headers["x-request-id"]
    response = await harness.client.put(URL, headers=headers, content=b"[]")
    assert response.status_code == 422, response.text
    assert response.json()["details"]["errors"][0]["loc"] == ["body"]
    assert (await harness.client.get(URL, headers=headers)).json() == {"views": [100, 1000, 10000]}
