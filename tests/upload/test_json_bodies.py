"""Upload reads JSON bodies with the common reader: a recursion bomb is 400 `bad_request`
(never a 500), JSON that is not an object is 422 `validation_error`, on init and complete."""

from __future__ import annotations

import pytest
from tests.support.assertions import assert_error
from tests.upload.conftest import (
    Harness,
)

NESTED = b"[" * 5000 + b"]" * 5000
NESTED_IN_OBJECT = b'{"filename": "a.mp4", "size": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
TOO_DEEP = b'{"filename": "a.mp4", "size": 1, "x": ' + b"[" * 40 + b"]" * 40 + b"}"


@pytest.mark.parametrize("path", ["/api/v1/upload/init", "/api/v1/upload/complete"])
async def test_nested_and_non_object_bodies(harness: Harness, path: str) -> None:
    for body in (NESTED, NESTED_IN_OBJECT, TOO_DEEP):
        response = await harness.client.post(path, content=body, headers=harness.headers())
        assert_error(response, 400, "bad_request")
    for body in (b"[]", b"[1, 2]", b"7", b"null"):
        response = await harness.client.post(path, content=body, headers=harness.headers())
        error = assert_error(response, 422, "validation_error")
        assert error["details"]["errors"][0]["loc"] == ["body"]
