"""Event ids: the position in the stream, sortable as text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashtam.events.outbox import event_id, parse_event_id

positions = st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))


@given(positions)
def test_an_id_names_its_position(position: tuple[int, int]) -> None:
    text = event_id(position)
    assert text.startswith("evt_")
    assert len(text) == 30
    assert parse_event_id(text) == position
    assert parse_event_id(text.lower().replace("evt_", "evt_", 1)) == position


@given(positions, positions)
def test_ids_sort_like_positions(a: tuple[int, int], b: tuple[int, int]) -> None:
    assert (event_id(a) < event_id(b)) == (a < b)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "evt_",
        "01HZZZZZZZZZZZZZZZZZZZZZZZ",
        "evt_01HZZZZZZZZZZZZZZZZZZZZZZ",
        "evt_ILOU" * 7,
        "evt_" + "Z" * 26,
        "evt_" + "0" * 25 + "U",
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not an event id"):
        parse_event_id(text)
