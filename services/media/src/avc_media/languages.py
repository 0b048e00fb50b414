"""BCP 47 language tags (subtitles, translations, presets), checked with `langcodes`."""

from __future__ import annotations

import langcodes

MAX_TAG_LENGTH = 35
"""RFC 5646 §4.4.1 asks implementations to accept at least 35 characters; longer is refused."""


def normalize_language(tag: str) -> str:
    """Returns the tag in its canonical form (`pt-br` -> `pt-BR`); ValueError when `tag` is not
    a well-formed, registered BCP 47 tag."""
    text = tag.strip()
    # langcodes also takes `en_US` and language names; the contract says BCP 47 tags only.
    if not text or len(text) > MAX_TAG_LENGTH or not text.isascii() or "_" in text or " " in text:
        raise ValueError(f"{tag!r} is not a BCP 47 language tag (e.g. en, pt-BR)")
    if not langcodes.tag_is_valid(text):
        raise ValueError(f"{tag!r} is not a BCP 47 language tag (e.g. en, pt-BR)")
    return langcodes.standardize_tag(text)
