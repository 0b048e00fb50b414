"""The hand-written tables of docs/events.md and docs/api.md name every event and every payload
field the code has (the schemas themselves are generated: see test_asyncapi.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from avc_common.events import EVENT_TYPES, PUBLIC_EVENT_TYPES

DOCS = Path(__file__).resolve().parents[2] / "docs"


def table_row(text: str, event_type: str, marker: str) -> list[str]:
    """Returns the cells of the table row whose first cell names `event_type` and `marker`."""
    for line in text.splitlines():
        first = line.split("|")[1] if line.startswith("|") else ""
        if f"`{event_type}`" in first and marker in first:
            return [cell.strip() for cell in line.strip().strip("|").split("|")]
    raise AssertionError(f"no table row for {event_type}")


@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_events_md_lists_every_type_with_its_schema_and_visibility(event_type: str) -> None:
    anchor = event_type.replace(".", "-")
    row = table_row(
        (DOCS / "events.md").read_text(encoding="utf-8"), event_type, f'<a id="{anchor}">'
    )
    assert row[1] == f"`{EVENT_TYPES[event_type].__name__}`"
    assert row[2] == ("public" if event_type in PUBLIC_EVENT_TYPES else "internal")


@pytest.mark.parametrize("event_type", PUBLIC_EVENT_TYPES)
def test_api_md_links_each_webhook_event_to_its_schema_and_fields(event_type: str) -> None:
    anchor = event_type.replace(".", "-")
    row = table_row((DOCS / "api.md").read_text(encoding="utf-8"), event_type, "(events.md#")
    assert f"(events.md#{anchor})" in row[0]
    assert f'<a id="{anchor}">' in (DOCS / "events.md").read_text(encoding="utf-8")
    model = EVENT_TYPES[event_type]
    assert row[1] == f"`{model.__name__}`"
    # Top-level names only: nested objects ({…}, [{…}]) are dropped before splitting.
    top = re.sub(r": \[?\{[^}]*\}\]?", "", row[2].strip("`"))
    assert [name.strip() for name in top.split(",")] == list(model.model_fields)
