"""In-process adapter details the contract suite does not pin down."""

from __future__ import annotations

import pytest

from avc_common.bus.memory import topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("video.uploaded", "video.uploaded", True),
        ("video.uploaded", "video.encoded", False),
        ("video.*", "video.uploaded", True),
        ("video.*", "video", False),
        ("video.*", "video.encoded.hd", False),
        ("*.uploaded", "video.uploaded", True),
        ("#", "video.uploaded", True),
        ("#", "a", True),
        ("video.#", "video", True),
        ("video.#", "video.encoded.hd", True),
        ("#.hd", "video.encoded.hd", True),
        ("#.hd", "video.encoded", False),
        ("video.#.hd", "video.hd", True),
        ("video.#.hd", "video.a.b.hd", True),
        ("*.*", "video", False),
        ("video", "videos", False),
    ],
)
def test_topic_matching_follows_amqp(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected
