"""hubbub.protocol.wire: decoding client ops of both subprotocols, with no loop and no network."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.protocol import wire
from hubbub.protocol.errors import InvalidOp, InvalidRequest, UnsupportedMediaType
from hubbub.protocol.wire import (
    DEFAULT_CODEC,
    JSON_CODEC,
    MSGPACK_CODEC,
    MalformedFrame,
    Ping,
    Pub,
    Refusal,
    Sub,
    Unsub,
)
from hubbub.transports.problems import close_code

CODECS = [JSON_CODEC, MSGPACK_CODEC]


def frame(codec: wire.Codec, obj: Any) -> str | bytes:
    """What a client of ``codec`` sends for ``obj``."""
    return msgspec.msgpack.encode(obj) if codec.binary else json.dumps(obj)


def refusal(codec: wire.Codec, obj: Any) -> Refusal:
    got = codec.decode(frame(codec, obj))
    assert isinstance(got, Refusal), got
    return got


# -- negotiation ---------------------------------------------------------------------


def test_negotiate_defaults_to_json_without_a_subprotocol() -> None:
    """A client that offers nothing speaks JSON and no subprotocol is named."""
    assert wire.negotiate([]) is DEFAULT_CODEC
    assert DEFAULT_CODEC.subprotocol is None and not DEFAULT_CODEC.binary


def test_negotiate_takes_the_clients_first_known_choice() -> None:
    """The client's order is its preference (RFC 6455 §4.1)."""
    assert wire.negotiate(["hubbub.v1.msgpack", "hubbub.v1.json"]) is MSGPACK_CODEC
    assert wire.negotiate(["x", "hubbub.v1.json", "hubbub.v1.msgpack"]) is JSON_CODEC


def test_negotiate_refuses_only_unknown_subprotocols() -> None:
    """Offering only subprotocols hubbub does not speak is an error naming the header."""
    with pytest.raises(InvalidRequest) as info:
        wire.negotiate(["chat", "hubbub.v2.json"])
    assert info.value.field == "Sec-WebSocket-Protocol"


# -- ops -----------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_decode_each_op(codec: wire.Codec) -> None:
    """Each op decodes to its Struct with defaults for what was left out."""
    assert codec.decode(frame(codec, {"op": "ping", "id": 1})) == Ping(id=1)
    assert codec.decode(frame(codec, {"op": "sub", "id": "s", "topics": ["a.>"]})) == Sub(
        id="s", topics=["a.>"])
    sub = codec.decode(frame(codec, {"op": "sub", "id": 2, "topics": ["a"], "after": "end"}))
    assert isinstance(sub, Sub) and sub.after == "end" and sub.group is None
    assert codec.decode(frame(codec, {"op": "unsub", "id": 3, "sub": 1})) == Unsub(id=3, sub=1)
    pub = codec.decode(frame(codec, {"op": "pub", "id": 4, "topic": "t", "data": {"x": [1]},
                                     "key": "k", "content_type": "text/plain"}))
    assert isinstance(pub, Pub)
    assert (pub.topic, pub.key, pub.content_type) == ("t", "k", "text/plain")


@pytest.mark.parametrize("codec", CODECS)
def test_req_reply_and_presence_fields_decode(codec: wire.Codec) -> None:
    """req and reply carry their payload raw like pub; sub carries client and info."""
    req = codec.decode(frame(codec, {"op": "req", "id": 1, "topic": "svc.a", "data": [1],
                                     "timeout": 2}))
    assert isinstance(req, wire.Req) and (req.topic, req.timeout) == ("svc.a", 2.0)
    decode = msgspec.msgpack.decode if codec.binary else msgspec.json.decode
    assert req.content_type is None and decode(bytes(req.data)) == [1]
    assert isinstance(codec.decode(frame(codec, {"op": "req", "id": 1, "topic": "t",
                                                 "data": 1})), wire.Req)
    reply = codec.decode(frame(codec, {"op": "reply", "id": 2, "to": "1.ab", "data": None}))
    assert isinstance(reply, wire.Reply) and reply.to == "1.ab"
    sub = codec.decode(frame(codec, {"op": "sub", "id": 3, "topics": ["a"], "client": "me",
                                     "info": {"k": [1]}}))
    assert isinstance(sub, Sub) and (sub.client, sub.info) == ("me", {"k": [1]})


def test_pub_data_stays_raw() -> None:
    """The payload of a pub is the undecoded value: JSON text, or MessagePack bytes."""
    pub = JSON_CODEC.decode('{"op":"pub","id":1,"topic":"t","data": {"a": [1, 2]}}')
    assert isinstance(pub, Pub) and bytes(pub.data) == b'{"a": [1, 2]}'
    pub = MSGPACK_CODEC.decode(msgspec.msgpack.encode(
        {"op": "pub", "id": 1, "topic": "t", "data": b"\x00\xff"}))
    assert isinstance(pub, Pub) and msgspec.msgpack.decode(pub.data) == b"\x00\xff"


@pytest.mark.parametrize("codec", CODECS)
def test_unknown_fields_are_ignored(codec: wire.Codec) -> None:
    """Fields a later version adds do not break an older hub (invariant
    "unknown fields are ignored")."""
    assert codec.decode(frame(codec, {"op": "ping", "id": 1, "trace": "x"})) == Ping(id=1)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(("obj", "error", "field"), [
    ({"op": "sub", "id": 1}, InvalidRequest, "topics"),
    ({"op": "sub", "id": 1, "topics": "a"}, InvalidRequest, "topics"),
    ({"op": "sub", "id": 1, "topics": ["a", 2]}, InvalidRequest, "topics[1]"),
    ({"op": "pub", "id": 1, "topic": "a"}, InvalidRequest, "data"),
    ({"op": "unsub", "id": 1, "sub": "one"}, InvalidRequest, "sub"),
    ({"op": "nope", "id": 1}, InvalidOp, "op"),
    ({"op": "reply", "id": 1}, InvalidRequest, "to"),
    ({"op": "reply", "id": 1, "to": "x"}, InvalidRequest, "data"),
    ({"op": "req", "id": 1, "data": 1}, InvalidRequest, "topic"),
    ({"op": "req", "id": 1, "topic": "a", "data": 1, "timeout": "5"}, InvalidRequest, "timeout"),
    ({"op": ["sub"], "id": 1}, InvalidOp, "op"),
    ({"op": {"x": 1}, "id": 1}, InvalidOp, "op"),
    ({"id": 1}, InvalidOp, "op"),
])
def test_answerable_refusals(
    codec: wire.Codec, obj: dict[str, Any], error: type[Exception], field: str
) -> None:
    """A bad op with a usable id is refused with that id and the field at fault
    (invariant "an op with an id is answered")."""
    got = refusal(codec, obj)
    assert got.op_id == 1
    assert type(got.error) is error and got.error.field == field
    assert got.error.message[:1].islower()


def test_refusal_messages_are_plain() -> None:
    """Messages say the fact, in lower case, without msgspec's path suffix."""
    got = refusal(JSON_CODEC, {"op": "sub", "id": 1, "topics": [3]})
    assert got.error.message == "expected `str`, got `int`"
    got = refusal(JSON_CODEC, {"op": "sub", "id": 1})
    assert got.error.message == "missing field `topics`"
    got = refusal(JSON_CODEC, {"op": "x" * 100, "id": 1})
    assert got.error.message == "unknown op"


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize("obj", [
    [1, 2],
    "ping",
    7,
    {"op": "ping"},
    {"op": "ping", "id": None},
    {"op": "ping", "id": True},
    {"op": "ping", "id": 1.5},
    {"op": "ping", "id": [1]},
    {"op": "ping", "id": 2**63},
    {"op": "ping", "id": "x" * 65},
    {"op": "nope"},
])
def test_unanswerable_frames(codec: wire.Codec, obj: Any) -> None:
    """Without an object and a usable id a frame cannot be answered: close 1008
    (invariant "an unanswerable frame closes")."""
    got = refusal(codec, obj)
    assert got.op_id is None
    assert isinstance(got.error, InvalidOp) and close_code(got.error) == 1008


def test_id_bounds() -> None:
    """Ids are signed 64-bit integers or strings of at most 64 characters."""
    for op_id in (-(2**63), 2**63 - 1, "", "x" * 64):
        assert JSON_CODEC.decode(json.dumps({"op": "ping", "id": op_id})) == Ping(id=op_id)
        assert MSGPACK_CODEC.decode(msgspec.msgpack.encode({"op": "ping", "id": op_id})) == Ping(
            id=op_id)


@pytest.mark.parametrize(("codec", "data", "code"), [
    (JSON_CODEC, "{nope", 1007),
    (JSON_CODEC, '{"op":"ping","id":1} trailing', 1007),
    (JSON_CODEC, b'{"op":"ping","id":1}', 1003),
    (MSGPACK_CODEC, b"\xc1", 1007),
    (MSGPACK_CODEC, msgspec.msgpack.encode({"op": "ping", "id": 1}) + b"\x00", 1007),
    (MSGPACK_CODEC, '{"op":"ping","id":1}', 1003),
    (MSGPACK_CODEC, msgspec.msgpack.encode({1: 2}), 1008),
])
def test_malformed_frames(codec: wire.Codec, data: str | bytes, code: int) -> None:
    """Undecodable frames map to 1007, frames of the wrong type to 1003 (RFC 6455 §7.4.1)."""
    got = codec.decode(data)
    assert isinstance(got, Refusal) and got.op_id is None
    assert close_code(got.error) == code
    if code == 1007:
        assert isinstance(got.error, MalformedFrame)
    if code == 1003:
        assert isinstance(got.error, UnsupportedMediaType)


# -- encoding --------------------------------------------------------------------------


def test_encode_replies() -> None:
    """Server frames are compact JSON, or MessagePack maps with raw bytes."""
    assert JSON_CODEC.encode({"op": "pong", "id": 1}) == b'{"op":"pong","id":1}'
    assert msgspec.msgpack.decode(MSGPACK_CODEC.encode({"op": "ok", "b": b"\x00"})) == {
        "op": "ok", "b": b"\x00"}


def test_fit_reason() -> None:
    """Close reasons are cut to 123 UTF-8 bytes, never inside a character (RFC 6455 §5.5)."""
    assert wire.fit_reason("short") == "short"
    cut = wire.fit_reason("é" * 100)
    assert len(cut.encode()) <= 123 and cut == "é" * 61


# -- properties -----------------------------------------------------------------------

_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=3),
    max_leaves=10,
)
_objects = st.dictionaries(
    st.sampled_from(["op", "id", "topics", "topic", "data", "after", "sub", "key", "group"]),
    st.sampled_from(["sub", "unsub", "pub", "ping", "ack"]) | _values,
    max_size=6,
)


@given(obj=_objects | _values)
def test_decode_never_raises_on_values(obj: Any) -> None:
    """Any MessagePack value decodes to an op or a refusal; an answerable one has its id."""
    got = MSGPACK_CODEC.decode(msgspec.msgpack.encode(obj))
    assert isinstance(got, Refusal | Ping | Sub | Unsub | Pub)
    if isinstance(got, Refusal) and got.op_id is not None:
        assert got.op_id == obj["id"]


@given(data=st.binary(max_size=64) | st.text(max_size=64))
def test_decode_never_raises_on_garbage(data: bytes | str) -> None:
    """Arbitrary bytes and text never raise from either codec."""
    for codec in CODECS:
        assert isinstance(codec.decode(data), Refusal | Ping | Sub | Unsub | Pub)


@given(op_id=st.integers(-(2**63), 2**63 - 1) | st.text(max_size=64),
       topics=st.lists(st.text(max_size=20), min_size=1, max_size=5),
       after=st.none() | st.text(max_size=30))
def test_sub_round_trip(op_id: int | str, topics: list[str], after: str | None) -> None:
    """What a client encodes, either codec decodes to the same op."""
    obj: dict[str, Any] = {"op": "sub", "id": op_id, "topics": topics}
    if after is not None:
        obj["after"] = after
    for codec in CODECS:
        assert codec.decode(frame(codec, obj)) == Sub(id=op_id, topics=topics, after=after)
