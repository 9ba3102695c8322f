"""The stored message and its encodings (pure: no asyncio, no I/O).

A :class:`Message` is what the engines return and what fan-out hands to every
subscriber. Its wire forms are computed at most once each and cached on the
object, so a message fanned out to ten thousand subscribers is serialized once
per wire format, and each subscriber receives the same bytes.

One message shape on every door::

    {"topic": "chat.room1", "offset": 42, "cursor": "k3j9qzx2ab.42.1057",
     "time": 1700000000123, "id": "0f3c9a7d2b1e4c58", "data": {...}}

``data`` is the JSON value itself for ``application/json`` payloads; any other
payload adds ``"content_type"`` and carries ``data`` base64-encoded in JSON
(raw bytes in MessagePack).
"""

from __future__ import annotations

import base64
import re
import struct
from typing import Any

import msgspec

from . import cursor as _cursor
from .depth import DEFAULT_JSON_DEPTH, check_depth
from .errors import InvalidRequest

JSON = "application/json"
OCTET = "application/octet-stream"
#: The content type of a request's error reply: a responder failed; the data is
#: its message, UTF-8 text (``hubbub.core.requests``, ``docs/requests.md``).
ERROR_TYPE = "application/vnd.hubbub.responder-error"
# RFC 9110 §8.3.1: media-type = type "/" subtype parameters; tokens per §5.6.2.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE_RE = re.compile(rf"({_TOKEN}/{_TOKEN})[ \t]*(;[\x20-\x7e]*)?")

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode
_msgpack_encode = msgspec.msgpack.Encoder().encode


#: The message object, for JSON payloads and (base64) for any other. The
#: cursor is ``epoch.offset.seq``, the text :func:`hubbub.protocol.cursor.encode` makes.
_MEMBERS = b'"topic":%s,"offset":%d,"cursor":"%s.%d.%d","time":%d,"id":%s'
_JSON = b"{" + _MEMBERS + b',"data":%s}'
_JSON_B64 = b"{" + _MEMBERS + b',"content_type":%s,"data":"%s"}'
#: The same as WebSocket ``msg`` ops.
_WS_JSON = b'{"op":"msg",' + _JSON[1:]
_WS_JSON_B64 = b'{"op":"msg",' + _JSON_B64[1:]


class Message(msgspec.Struct, gc=False, eq=False):
    """One stored message. Immutable by convention; encodings are cached.

    A struct the garbage collector does not track (``gc=False``): its fields
    are strings, bytes and ints, so it can be part of no reference cycle, and
    a store holding a million messages adds nothing to each collection's
    walk (a tracked object each would make every full collection visit them
    all: pauses of tens of milliseconds under a steady publish load).
    Equality and hashing are by identity (``eq=False``).
    """

    topic: str
    epoch: str
    offset: int
    seq: int
    time: int  # milliseconds since the Unix epoch
    id: str
    data: bytes  # compact JSON text when content_type is JSON
    content_type: str = JSON
    _cursor: str | None = None
    _json: bytes | None = None
    _msgpack: bytes | None = None
    _sse: bytes | None = None
    _ws_json: bytes | None = None
    _ws_text: str | None = None
    _ws_msgpack: bytes | None = None
    _ws_frame: bytes | None = None
    _ws_msgpack_frame: bytes | None = None

    def __repr__(self) -> str:
        return f"<Message {self.topic}#{self.offset} seq={self.seq}>"

    @property
    def cursor(self) -> str:
        c = self._cursor
        if c is None:
            c = self._cursor = _cursor.encode(self.epoch, self.offset, self.seq)
        return c

    @property
    def is_json(self) -> bool:
        return self.content_type == JSON

    def value(self) -> Any:
        """The payload as a Python value: the decoded JSON, or the raw bytes."""
        return _json_decode(self.data) if self.is_json else self.data

    # -- encodings (each computed once) ---------------------------------

    def to_json(self) -> bytes:
        """The message object as compact JSON bytes."""
        j = self._json
        if j is None:
            j = self._json = self._encode(_JSON, _JSON_B64)
        return j

    def _encode(self, json_form: bytes, b64_form: bytes) -> bytes:
        """The message object in ``json_form`` (JSON payloads) or ``b64_form``.

        Every door (a poll page, an SSE event, a replayed frame) builds it
        once per message, so it is one %-format of the fields as they are,
        rather than bytes concatenated piece by piece.
        """
        if self.content_type == JSON:
            return json_form % (
                _json_encode(self.topic), self.offset, self.epoch.encode(), self.offset,
                self.seq, self.time, _json_encode(self.id), self.data)
        return b64_form % (
            _json_encode(self.topic), self.offset, self.epoch.encode(), self.offset, self.seq,
            self.time, _json_encode(self.id), _json_encode(self.content_type),
            base64.b64encode(self.data))

    def to_dict(self) -> dict[str, Any]:
        """The message object as a dict (data decoded, bytes left raw)."""
        d: dict[str, Any] = {
            "topic": self.topic, "offset": self.offset, "cursor": self.cursor,
            "time": self.time, "id": self.id,
        }
        if not self.is_json:
            d["content_type"] = self.content_type
        d["data"] = self.value()
        return d

    def sse_event(self) -> bytes:
        """The SSE event: ``id:`` is the cursor, ``event: message``, one ``data:`` line."""
        s = self._sse
        if s is None:
            s = self._sse = (
                b"id: " + self.cursor.encode() + b"\nevent: message\ndata: "
                + self.to_json() + b"\n\n"
            )
        return s

    def ws_json(self) -> bytes:
        """The WebSocket ``msg`` frame, JSON form (UTF-8 bytes of a text frame)."""
        w = self._ws_json
        if w is None:
            w = self._ws_json = b'{"op":"msg",' + self.to_json()[1:]
        return w

    def ws_text(self) -> str:
        """The WebSocket ``msg`` frame, JSON form, as the ``str`` a text frame sends."""
        t = self._ws_text
        if t is None:
            t = self._ws_text = self.ws_json().decode()
        return t

    def ws_msgpack(self) -> bytes:
        """The WebSocket ``msg`` frame, MessagePack form (data as native value or bytes)."""
        w = self._ws_msgpack
        if w is None:
            d = self.to_dict()
            w = self._ws_msgpack = _msgpack_encode({"op": "msg", **d})
        return w

    def ws_frame(self) -> bytes:
        """The whole WebSocket text frame of the JSON ``msg`` op, as a server sends it.

        Server frames are unmasked, so these bytes are the same for every
        subscriber and can be written to each socket as they are (see
        :func:`ws_frame`). Computed from :meth:`to_json` without caching
        :meth:`ws_json`, so a message keeps one copy of its frame text.
        """
        f = self._ws_frame
        if f is None:
            j = self._json
            f = self._ws_frame = ws_frame(
                self._encode(_WS_JSON, _WS_JSON_B64) if j is None else b'{"op":"msg",' + j[1:])
        return f

    def ws_msgpack_frame(self) -> bytes:
        """The whole WebSocket binary frame of the MessagePack ``msg`` op."""
        f = self._ws_msgpack_frame
        if f is None:
            f = self._ws_msgpack_frame = ws_frame(self.ws_msgpack(), BINARY_FRAME)
        return f


#: RFC 6455 §5.2 opcodes of the data frames a server sends.
TEXT_FRAME, BINARY_FRAME = 0x1, 0x2


def ws_frame(payload: bytes, opcode: int = TEXT_FRAME) -> bytes:
    """One final, unmasked WebSocket frame (RFC 6455 §5.2) carrying ``payload``.

    A text frame's payload must be UTF-8 (every ``msg`` frame's JSON is).
    """
    n = len(payload)
    if n < 126:
        return _head7(0x80 | opcode, n) + payload
    if n < 1 << 16:
        return _head16(0x80 | opcode, 126, n) + payload
    return _head64(0x80 | opcode, 127, n) + payload


_head7 = struct.Struct("!BB").pack
_head16 = struct.Struct("!BBH").pack
_head64 = struct.Struct("!BBQ").pack


def compact_json(data: bytes, *, field: str = "data",
                 max_depth: int = DEFAULT_JSON_DEPTH) -> bytes:
    """Validate a client's JSON text and return it compact (one line, as SSE needs).

    Raises:
        TooDeep: ``data`` nests deeper than ``max_depth`` (checked before decoding).
        InvalidRequest: ``data`` is not valid JSON.
    """
    check_depth(data, max_depth, field=field)
    try:
        return _json_encode(_json_decode(data))
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidRequest("malformed JSON", field=field) from None


def media_type(value: str | None, *, field: str) -> str:
    """The content type to store: ``JSON`` for JSON types, else the value as given."""
    if value is None:
        return OCTET
    known = _media_types.get(value)
    if known is not None:
        return known
    stripped = value.strip()
    if not stripped:
        return OCTET
    m = _MEDIA_TYPE_RE.fullmatch(stripped)
    if m is None or len(stripped) > 255:
        raise InvalidRequest("content type must be a media type like text/plain", field=field)
    essence = m.group(1).lower()
    result = JSON if essence == JSON or essence.endswith("+json") else stripped
    if len(_media_types) < 256:  # clients send the same few types over and over
        _media_types[value] = result
    return result


_media_types: dict[str, str] = {}
