"""Cursor text: encode, decode, anchors, and refusal of anything else."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.protocol import cursor
from hubbub.protocol.errors import InvalidCursor

EPOCH = st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=10, max_size=10)
POS = st.integers(min_value=0, max_value=cursor.MAX_POSITION)


@given(EPOCH, POS, POS)
def test_round_trip(epoch: str, offset: int, seq: int) -> None:
    """Every cursor decodes to what was encoded."""
    text = cursor.encode(epoch, offset, seq)
    assert cursor.decode(text) == cursor.Cursor(epoch, offset, seq)
    assert str(cursor.decode(text)) == text


def test_new_epochs_are_valid_and_distinct() -> None:
    """Fresh epochs decode inside a cursor and do not repeat."""
    epochs = {cursor.new_epoch() for _ in range(1000)}
    assert len(epochs) == 1000
    for e in list(epochs)[:10]:
        assert cursor.decode(f"{e}.1.1").epoch == e


@pytest.mark.parametrize(
    "text",
    ["", "abc", "abcdefghij.1", "abcdefghij.1.2.3", "ABCDEFGHIJ.1.2", "abcdefghij.-1.2",
     "abcdefghij.01.2", "abcdefghij.1.99999999999999999999", "abcdefghij.1.9223372036854775808",
     "abcdefghij. 1.2", "abcdefghijk.1.2", "abcdefghij.1.2\n"],
)
def test_malformed(text: str) -> None:
    """Text hubbub could not have issued is an InvalidCursor."""
    with pytest.raises(InvalidCursor):
        cursor.decode(text)


@given(st.text(max_size=60))
def test_any_text_decodes_or_raises_invalid_cursor(text: str) -> None:
    """Decoding never fails with anything but InvalidCursor."""
    try:
        c = cursor.decode(text)
    except InvalidCursor:
        return
    assert cursor.encode(c.epoch, c.offset, c.seq) == text


def test_anchors() -> None:
    """'start', 'end' and None are recognised as such."""
    assert cursor.parse_after(None) is None
    assert cursor.parse_after("start") == "start"
    assert cursor.parse_after("end") == "end"
    assert isinstance(cursor.parse_after("abcdefghij.0.0"), cursor.Cursor)
