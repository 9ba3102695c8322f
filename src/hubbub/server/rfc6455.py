"""The WebSocket protocol's framing, server side (RFC 6455): pure, no I/O.

:class:`FrameReader` takes the bytes a client sent (:meth:`~FrameReader.receive_data`)
and returns what they mean: whole messages, pings, pongs, a close, or the
:class:`Failure` that ends the connection. :func:`frame` builds a server
frame. :func:`accept_key` answers the opening handshake.

Invariants (each quotes the RFC)
--------------------------------
"unmasked frames fail": "The server MUST close the connection upon receiving
    a frame that is not masked" (§5.1): 1002.
"no reserved bits": RSV1-3 "MUST be 0 unless an extension is negotiated that
    defines meanings for non-zero values" (§5.2) and no extension is ever
    negotiated here; an unknown opcode fails the connection too: 1002.
"control frames short and whole": "All control frames MUST have a payload
    length of 125 bytes or less and MUST NOT be fragmented" (§5.5); they "MAY
    be injected in the middle of a fragmented message" (§5.4) and are
    reported at once.
"fragments continue a message": A continuation frame with no message to
    continue, or a new data frame while one is unfinished, is a protocol
    error (§5.4): 1002.
"text is valid UTF-8": "When an endpoint is to interpret a byte stream as
    UTF-8 but finds that the byte stream is not, in fact, a valid UTF-8
    stream, that endpoint MUST _Fail the WebSocket Connection_" (§8.1): 1007,
    checked as fragments arrive, so a bad text fails before it ends.
"only codes a peer may send": A close frame's body is empty or a status code
    of two bytes and a UTF-8 reason (§5.5.1); codes a peer may not send
    (§7.4: 1004-1006, 1015, below 1000, 1016-2999, 5000 and up) fail with 1002.
"big messages fail": A message longer than ``max_size`` fails with 1009
    (§7.4.1: "a message that is too big for it to process").
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import struct
from dataclasses import dataclass

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = (TEXT, BINARY)
_CONTROL = (CLOSE, PING, PONG)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: Close codes a peer may send (RFC 6455 §7.4.1 and the IANA registry);
#: 3000-4999 are for libraries and applications.
_PEER_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012,
                         1013, 1014})


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key`` (§4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest()).decode()


def valid_key(key: str) -> bool:
    """Whether ``key`` is "a base64-encoded value that, when decoded, is 16 bytes
    in length" (§4.2.1)."""
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server frame."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's body; 1005 (no code) is the empty body (§7.1.5)."""
    if code == 1005:
        return b""
    # §5.5: a control frame's body is at most 125 bytes; cut the reason at a
    # character boundary, as it must stay valid UTF-8.
    return struct.pack("!H", code) + reason.encode()[:123].decode("utf-8", "ignore").encode()


def unmask(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``mask`` (§5.3), as one big integer."""
    n = len(data)
    if n == 0:
        return data
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


@dataclass(frozen=True, slots=True)
class Message:
    """A whole data message: ``str`` for text, ``bytes`` for binary."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """The peer's close frame: its code (1005 when it gave none) and reason."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Failure:
    """The peer broke the protocol: close with ``code`` and ``reason``; read no more."""

    code: int
    reason: str


Event = Message | Ping | Pong | Close | Failure


class FrameReader:
    """Client frames in, events out (the module docstring's rules).

    After a :class:`Close` or a :class:`Failure` it returns nothing more.
    """

    __slots__ = ("max_size", "_buffer", "_parts", "_size", "_opcode", "_text", "_done")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = b""
        self._parts: list[bytes] = []
        self._size = 0
        self._opcode: int | None = None  # of the unfinished message
        self._text: codecs.IncrementalDecoder | None = None
        self._done = False

    def receive_data(self, data: bytes) -> list[Event]:
        """The events ``data`` completes (none while a frame is partial)."""
        if self._done:
            return []
        buf = self._buffer + data if self._buffer else data
        events: list[Event] = []
        pos, end = 0, len(buf)
        while not self._done:
            if end - pos < 2:
                break
            b0, b1 = buf[pos], buf[pos + 1]
            length, head = b1 & 0x7F, 2
            if length == 126:
                if end - pos < 4:
                    break
                length, head = struct.unpack_from("!H", buf, pos + 2)[0], 4
            elif length == 127:
                if end - pos < 10:
                    break
                length, head = struct.unpack_from("!Q", buf, pos + 2)[0], 10
            failure = self._check_head(b0, b1, length)
            if failure is not None:
                events.append(self._fail(failure))
                break
            if end - pos < head + 4 + length:
                break
            mask = buf[pos + head:pos + head + 4]
            start = pos + head + 4
            payload = unmask(buf[start:start + length], mask)
            pos = start + length
            event = self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload)
            if event is not None:
                events.append(event)
        self._buffer = b"" if self._done else buf[pos:]
        return events

    def _check_head(self, b0: int, b1: int, length: int) -> Failure | None:
        opcode = b0 & 0x0F
        if b1 & 0x80 == 0:
            return Failure(1002, "client frames must be masked")  # invariant "unmasked frames fail"
        if b0 & 0x70:
            return Failure(1002, "reserved bits set")  # invariant "no reserved bits"
        if opcode in _CONTROL:
            if length > 125:
                return Failure(1002, "control frame too long")  # invariant "control frames short and whole"
            if b0 & 0x80 == 0:
                return Failure(1002, "fragmented control frame")
            return None
        if opcode not in _DATA and opcode != CONTINUATION:
            return Failure(1002, "unknown opcode")  # invariant "no reserved bits"
        if opcode == CONTINUATION and self._opcode is None:
            return Failure(1002, "continuation with nothing to continue")  # invariant "fragments continue a message"
        if opcode != CONTINUATION and self._opcode is not None:
            return Failure(1002, "new message inside a fragmented one")
        if self._size + length > self.max_size:
            return Failure(1009, "message too big")  # invariant "big messages fail"
        return None

    def _fail(self, failure: Failure) -> Failure:
        self._done = True
        return failure

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> Event | None:
        if opcode == PING:
            return Ping(payload)
        if opcode == PONG:
            return Pong(payload)
        if opcode == CLOSE:
            return self._close(payload)
        if opcode != CONTINUATION:
            self._opcode = opcode
            self._text = codecs.getincrementaldecoder("utf-8")() if opcode == TEXT else None
        text = self._text
        if text is not None:
            try:
                decoded = text.decode(payload, final=fin)
            except UnicodeDecodeError:
                return self._fail(Failure(1007, "invalid UTF-8 in a text message"))  # invariant "text is valid UTF-8"
            if fin and not self._parts:
                self._opcode = self._text = None
                return Message(decoded)
            self._parts.append(decoded.encode())
        else:
            if fin and not self._parts:
                self._opcode = None
                return Message(payload)
            self._parts.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        joined = b"".join(self._parts)
        is_text = self._opcode == TEXT
        self._parts, self._size, self._opcode, self._text = [], 0, None, None
        return Message(joined.decode() if is_text else joined)

    def _close(self, payload: bytes) -> Event:
        self._done = True
        if not payload:
            return Close(1005, "")
        if len(payload) == 1:
            return Failure(1002, "close frame body of one byte")  # invariant "only codes a peer may send"
        code = struct.unpack_from("!H", payload)[0]
        if code not in _PEER_CODES and not 3000 <= code <= 4999:
            return Failure(1002, "invalid close code")
        try:
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            return Failure(1007, "invalid UTF-8 in the close reason")
        return Close(code, reason)


__all__ = ["BINARY", "CLOSE", "PING", "PONG", "TEXT", "Close", "Event", "Failure",
           "FrameReader", "Message", "Ping", "Pong", "accept_key", "close_payload", "frame",
           "unmask", "valid_key"]
