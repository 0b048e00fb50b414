"""Schemathesis over the whole public API of an all-in-one server: no 5xx (see `fuzz`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .fuzz import run_fuzz

pytestmark = [
    pytest.mark.slow,
]


def test_no_server_errors_anywhere_in_the_public_api(tmp_path: Path) -> None:
    result = run_fuzz(tmp_path, max_examples=5, workers=2)
    print(f"\n{result.summary()}")
    assert result.operations > 0
    assert sum(result.statuses.values()) > result.operations, result.output[-4000:]
    assert not result.server_errors, "\n".join(result.server_errors) + result.output[-4000:]
    assert result.exit_code == 0, result.output[-6000:]
