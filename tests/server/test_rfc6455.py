"""hubbub.server.rfc6455: the frame reader, pure (no loop, no socket)."""

from __future__ import annotations

import base64

from hypothesis import given
from hypothesis import strategies as st

from hubbub.server import rfc6455
from tests.server.test_websocket import client_frame


def test_accept_key_is_the_rfcs_example() -> None:
    """RFC 6455 §1.3's worked example."""
    assert rfc6455.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert rfc6455.valid_key("dGhlIHNhbXBsZSBub25jZQ==")
    assert not rfc6455.valid_key(base64.b64encode(b"x" * 15).decode())
    assert not rfc6455.valid_key("not base64!")


@given(st.lists(st.binary(max_size=300), min_size=1, max_size=5), st.data())
def test_messages_survive_any_fragmentation_and_any_split(
    parts: list[bytes], data: st.DataObject
) -> None:
    """A binary message in fragments, fed in arbitrary pieces, is one message."""
    wire = b"".join(client_frame(0x2 if i == 0 else 0x0, p, fin=i == len(parts) - 1)
                    for i, p in enumerate(parts))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    reader = rfc6455.FrameReader(1 << 20)
    events: list[rfc6455.Event] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        events += reader.receive_data(wire[a:b])
    assert events == [rfc6455.Message(b"".join(parts))]


@given(st.text(max_size=200), st.integers(1, 4))
def test_text_split_inside_a_character_is_valid(text: str, pieces: int) -> None:
    """UTF-8 checked fragment by fragment accepts a character cut in two."""
    raw = text.encode()
    size = max(1, len(raw) // pieces)
    chunks = [raw[i:i + size] for i in range(0, len(raw), size)] or [b""]
    wire = b"".join(client_frame(0x1 if i == 0 else 0x0, c, fin=i == len(chunks) - 1)
                    for i, c in enumerate(chunks))
    assert rfc6455.FrameReader(1 << 20).receive_data(wire) == [rfc6455.Message(text)]


@given(st.binary(max_size=2000))
def test_any_bytes_give_events_or_one_failure_never_an_exception(wire: bytes) -> None:
    reader = rfc6455.FrameReader(1000)
    events = reader.receive_data(wire)
    failures = [e for e in events if isinstance(e, rfc6455.Failure)]
    assert len(failures) <= 1 and (not failures or events[-1] is failures[0])


def test_a_message_over_the_limit_fails_with_1009() -> None:
    reader = rfc6455.FrameReader(10)
    frames = client_frame(0x2, b"x" * 6, fin=False) + client_frame(0x0, b"x" * 6)
    assert reader.receive_data(frames) == [rfc6455.Failure(1009, "message too big")]


def test_nothing_after_a_close() -> None:
    reader = rfc6455.FrameReader(100)
    events = reader.receive_data(client_frame(0x8, b"\x03\xe8") + client_frame(0x1, b"x"))
    assert events == [rfc6455.Close(1000, "")]
    assert reader.receive_data(client_frame(0x1, b"y")) == []


def test_server_frames_have_the_three_length_forms() -> None:
    for n, head in ((125, 2), (126, 4), (65536, 10)):
        frame = rfc6455.frame(rfc6455.BINARY, b"x" * n)
        assert len(frame) == head + n and frame[0] == 0x82


def test_a_long_reason_is_cut_at_a_character_boundary() -> None:
    payload = rfc6455.close_payload(1000, "é" * 100)
    assert len(payload) <= 125
    payload[2:].decode()  # still UTF-8
