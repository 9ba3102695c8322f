"""A message's encodings: one message object on every door, built once each."""

from __future__ import annotations

import base64
import json
import os

import msgspec
import pytest
from websockets.frames import Frame, Opcode

from hubbub.protocol.message import Message


def _messages() -> list[Message]:
    return [
        Message("chat.room1", "k3j9qzx2ab", 42, 1057, 1_700_000_000_123, "0f3c9a7d2b1e4c58",
                b'{"text":"h\\u00e9","n":[1,2]}'),
        # Strings that need escaping are escaped, whatever an engine hands over.
        Message('odd"topic', "ep", 1, 2, 3, 'id"\\\n', b'"x"'),
        Message("img.t", "ep", 7, 9, 1, "id2", os.urandom(300), "image/png"),
        Message("big.t", "ep", 1, 1, 1, "id3", b'"' + b"y" * 70_000 + b'"'),
    ]


@pytest.mark.parametrize("m", _messages(), ids=lambda m: m.topic)
def test_every_form_carries_the_same_object(m: Message) -> None:
    obj = json.loads(m.to_json())
    expected = {"topic": m.topic, "offset": m.offset, "cursor": m.cursor, "time": m.time,
                "id": m.id}
    if m.is_json:
        expected["data"] = json.loads(m.data)
    else:
        expected["content_type"] = m.content_type
        expected["data"] = base64.b64encode(m.data).decode()
    assert obj == expected
    assert list(obj) == list(expected)  # member order, as documented
    assert json.loads(m.ws_json()) == {"op": "msg", **expected}
    assert m.sse_event() == (b"id: " + m.cursor.encode() + b"\nevent: message\ndata: "
                             + m.to_json() + b"\n\n")
    assert msgspec.msgpack.decode(m.ws_msgpack()) == {"op": "msg", **m.to_dict()}


@pytest.mark.parametrize("first", ["frame", "json"])
@pytest.mark.parametrize("m", _messages(), ids=lambda m: m.topic)
def test_ws_frame_is_the_unmasked_frame_of_ws_json(m: Message, first: str) -> None:
    """Built on its own or from a cached to_json(), the frame is the same bytes."""
    fresh = Message(m.topic, m.epoch, m.offset, m.seq, m.time, m.id, m.data, m.content_type)
    if first == "json":
        fresh.to_json()
    assert fresh.ws_frame() == Frame(Opcode.TEXT, m.ws_json()).serialize(mask=False)
    assert fresh.ws_frame() is fresh.ws_frame()


def test_messages_are_invisible_to_the_garbage_collector() -> None:
    """A store of a million messages must not lengthen every full collection."""
    import gc

    m = _messages()[0]
    m.to_json(), m.ws_frame(), m.sse_event()  # the cached encodings are plain bytes too
    assert not gc.is_tracked(m)
    # Identity, not field, equality: two stored messages are never "the same".
    twin = Message(m.topic, m.epoch, m.offset, m.seq, m.time, m.id, m.data)
    assert m != twin and len({m, twin}) == 2
