from __future__ import annotations

import pytest

from avc_media.languages import normalize_language


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("en", "en"),
        ("pt-BR", "pt-BR"),
        ("pt-br", "pt-BR"),
        ("zh-Hant", "zh-Hant"),
        ("sr-Latn-RS", "sr-Latn-RS"),
    ],
)
def test_valid_tags_come_back_canonical(tag: str, canonical: str) -> None:
    assert normalize_language(tag) == canonical


@pytest.mark.parametrize(
    "tag", ["", "english", "en_US", "xx-zz-zz-zz", "123", "en US", "ü", "a" * 40]
)
def test_anything_else_is_refused(tag: str) -> None:
    with pytest.raises(ValueError, match="BCP 47"):
        normalize_language(tag)
