"""WebSocket frames of the ``hubbub.v1`` protocols (pure: no asyncio, no I/O).

Theory of operation
-------------------
A client speaks one of two subprotocols, chosen in the opening handshake
(RFC 6455 §1.9, §4.2.2): ``hubbub.v1.json`` (each op a JSON object in a text
frame) or ``hubbub.v1.msgpack`` (the same maps in MessagePack, in binary
frames, payload bytes raw). :func:`negotiate` picks the :class:`Codec`; its
:meth:`Codec.decode` turns one frame into one client op, a tagged
:class:`msgspec.Struct` of the :data:`ClientOp` union, or into a
:class:`Refusal` that says what went wrong and whether it can be answered.

Invariants
----------
"an op with an id is answered": Every client op carries an ``id`` (an
    integer in the signed 64-bit range, or a string of at most 64
    characters), echoed in its reply. A frame with a usable ``id`` is always
    answered, even when its op is unknown or malformed:
    ``Refusal(error, op_id)`` becomes an ``err`` frame and the connection
    carries on.
"an unanswerable frame closes": A frame that cannot be answered (not JSON or
    MessagePack, not an object, no usable ``id``, a text frame on the
    MessagePack protocol or a binary one on the JSON protocol) gives
    ``Refusal(error, None)``: the connection closes with the code the error
    maps to in :mod:`hubbub.transports.problems` (1007, 1008 or 1003 of
    RFC 6455 §7.4.1).
"unknown fields are ignored": Unknown fields are ignored, so newer clients
    can talk to older hubs; missing or mistyped known fields are errors
    naming the field, as msgspec reports them (``topics[0]``).

Decoding is one msgspec call on the happy path; only a frame that fails it is
decoded a second time, leniently, to find its ``op`` and ``id``.

The payload of a ``pub`` stays :class:`msgspec.Raw` (the undecoded bytes of
the value): in JSON it goes to the store as it came (the hub only compacts
it), in MessagePack the transport decodes it once to tell bytes from values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

import msgspec

from .depth import DEFAULT_JSON_DEPTH, too_deep
from .errors import (
    HubbubError,
    InvalidOp,
    InvalidRequest,
    MalformedFrame,
    TooDeep,
    UnsupportedMediaType,
)
from .message import Message

SUBPROTOCOL_JSON: Final = "hubbub.v1.json"
SUBPROTOCOL_MSGPACK: Final = "hubbub.v1.msgpack"
SUBPROTOCOLS: Final = (SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK)
MAX_ID_LENGTH: Final = 64
#: RFC 6455 §5.5: a control frame's payload is at most 125 bytes; a close
#: frame's starts with the 2-byte status code (§5.5.1), leaving 123 for the reason.
MAX_REASON_BYTES: Final = 123
#: Group subscriptions: deliveries unsettled at once (default, most), lease seconds.
DEFAULT_WINDOW: Final = 10
MAX_WINDOW: Final = 1000
DEFAULT_LEASE: Final = 30.0

#: The ``id`` of a client op: what the client chose, echoed in the reply.
OpId = (
    Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
    | Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
)


# -- client ops --------------------------------------------------------------------


class Op(msgspec.Struct, tag_field="op"):
    """Base of every client op: the ``op`` tag and the ``id`` echoed in the reply."""

    id: OpId


class Sub(Op, tag="sub"):
    """Follow ``topics`` (names or patterns) from ``after`` (default: the live end).

    With ``group``, take a share of a consumer group's messages instead: each
    is leased to this subscription (at most ``window`` unsettled at once, each
    for ``lease`` seconds) and must be acked. ``start`` says where a group
    that does not exist yet begins; ``after`` does not apply to groups.

    On topics whose namespace has presence on, ``client`` (an id the client
    chooses) and ``info`` (any JSON value) say who is present.
    """

    topics: list[str]
    after: str | None = None
    group: str | None = None
    window: Annotated[int, msgspec.Meta(ge=1, le=MAX_WINDOW)] | None = None
    lease: float | None = None
    start: Literal["start", "end"] | None = None
    client: str | None = None
    info: Any = None


class Ack(Op, tag="ack"):
    """Settle group deliveries of this connection as done."""

    ids: list[str]


class Nack(Op, tag="nack"):
    """Give group deliveries back, due again after ``delay`` seconds; ``error`` is kept
    for the dead-letter topic."""

    ids: list[str]
    delay: float = 0.0
    error: str | None = None


class Extend(Op, tag="extend"):
    """Extend the leases of group deliveries to ``lease`` seconds from now."""

    ids: list[str]
    lease: float = DEFAULT_LEASE


class Unsub(Op, tag="unsub"):
    """End the subscription ``sub``, or every subscription whose topics are all in ``topics``."""

    topics: list[str] | None = None
    sub: int | None = None


class Pub(Op, tag="pub"):
    """Store one message; the reply comes after the store committed it."""

    topic: str
    data: msgspec.Raw
    key: str | None = None
    content_type: str | None = None


class Ping(Op, tag="ping"):
    """Ask for a ``pong``: an application-level liveness check."""


class Req(Op, tag="req"):
    """Publish a request to ``topic`` and answer with its one reply, or with an
    ``err`` (``timeout``) when none came within ``timeout`` seconds (default 5).
    Other ops go on while it waits."""

    topic: str
    data: msgspec.Raw
    timeout: float | None = None
    content_type: str | None = None


class Reply(Op, tag="reply"):
    """Answer the request ``to`` (a request id from its envelope) with ``data``,
    or tell its caller the responder failed with ``error`` (a message) instead."""

    to: str
    #: Empty (no bytes) when absent: ``error`` stands in for it.
    data: msgspec.Raw = msgspec.Raw()
    content_type: str | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        # msgspec turns these into validation errors; explain() reads the field
        # from the text, worded as msgspec words its own.
        if self.error is None:
            if not self.data:
                raise ValueError("Object missing required field `data`")
        elif self.data or self.content_type is not None:
            raise ValueError("a reply has either data or error - at `$.error`")


class Auth(Op, tag="auth"):
    """Authenticate the connection with a bearer token (a JWT or an API key), for
    clients that cannot send ``Authorization`` on the upgrade and would rather not
    put the token in the URL. Only as the first op, or while anonymous."""

    token: str


ClientOp = Sub | Unsub | Pub | Ping | Ack | Nack | Extend | Req | Reply | Auth
OPS: Final = frozenset({"sub", "unsub", "pub", "ping", "ack", "nack", "extend", "req", "reply",
                        "auth"})
#: Ops of the design that later versions add; named so the error says "not yet".
RESERVED_OPS: Final[frozenset[str]] = frozenset()


@dataclass(frozen=True, slots=True)
class Refusal:
    """A frame the hub will not carry out.

    ``op_id`` is the id to answer with (send ``err``, carry on), or ``None``
    when the frame cannot be answered: close with the error's close code.
    """

    error: HubbubError
    op_id: int | str | None = None


class _Envelope(msgspec.Struct):
    op: Any = None
    id: Any = None


_AT_RE = re.compile(r"(.*) - at `\$(.*)`", re.DOTALL)
_MISSING_RE = re.compile(r"Object missing required field `(.*)`")
_NOT_OBJECT = "a frame must be an object with an op and an id"
_NO_ID = f"every op needs an id: an integer or a string of at most {MAX_ID_LENGTH} characters"


def _valid_id(value: Any) -> bool:
    if type(value) is int:
        return -(2**63) <= value <= 2**63 - 1
    return type(value) is str and len(value) <= MAX_ID_LENGTH


def explain(exc: msgspec.ValidationError) -> InvalidRequest:
    """An :class:`InvalidRequest` from a msgspec validation error, naming the field."""
    text = str(exc)
    field = None
    if m := _AT_RE.fullmatch(text):
        text, field = m.group(1), m.group(2).lstrip(".") or None
    elif m := _MISSING_RE.fullmatch(text):
        text, field = f"missing field `{m.group(1)}`", m.group(1)
    return InvalidRequest(text[:1].lower() + text[1:], field=field)


def _refuse_invalid(envelope: _Envelope, exc: msgspec.ValidationError) -> Refusal:
    """Why a decodable frame is not a valid op (invariants "an op with an id is
    answered" and "an unanswerable frame closes")."""
    op_id = envelope.id
    if not _valid_id(op_id):
        return Refusal(InvalidOp(_NO_ID, field="id"))
    op = envelope.op
    if op is None:
        return Refusal(InvalidOp("missing op", field="op"), op_id)
    if not isinstance(op, str):
        return Refusal(InvalidOp("op must be a string", field="op"), op_id)
    if op in RESERVED_OPS:
        return Refusal(InvalidOp(f"op {op!r} is not available yet", field="op"), op_id)
    if op not in OPS:
        shown = f" {op!r}" if len(op) <= 32 else ""
        return Refusal(InvalidOp(f"unknown op{shown}", field="op"), op_id)
    return Refusal(explain(exc), op_id)


# -- codecs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Codec:
    """One subprotocol's frames: how ops are decoded and replies encoded.

    ``subprotocol`` is the name to accept in the handshake (``None`` when the
    client offered none and gets JSON by default); ``binary`` says whether
    frames are binary (MessagePack) or text (JSON).
    """

    subprotocol: str | None
    binary: bool

    def decode(self, frame: str | bytes, *,
               max_depth: int = DEFAULT_JSON_DEPTH + 1) -> ClientOp | Refusal:
        """One client op from one frame's payload (``str`` for text frames).

        Args:
            max_depth: the deepest nesting a JSON frame may have (the frame's
                own object counts one); a deeper one is refused undecoded.
        Returns:
            The op, or a :class:`Refusal`: answer it with ``err`` when it has
            an ``op_id``, else close the connection (invariant "an
            unanswerable frame closes").
        """
        if isinstance(frame, str) == self.binary:
            kind, want = ("text", "binary") if self.binary else ("binary", "text")
            proto = SUBPROTOCOL_MSGPACK if self.binary else SUBPROTOCOL_JSON
            return Refusal(UnsupportedMediaType(f"{kind} frame on {proto}: send {want} frames"))
        if not self.binary and too_deep(frame, max_depth):
            return Refusal(TooDeep(f"frame nests deeper than {max_depth} levels", limit=max_depth))
        ops, envelope = _DECODERS[self.binary]
        try:
            op: ClientOp = ops(frame)
            return op
        except RecursionError:
            # MessagePack is not measured before decoding (a scan would cost a
            # parse): msgspec's own bound refuses it, with no op id to answer.
            return Refusal(TooDeep("frame nests too deep"))
        except msgspec.ValidationError as exc:
            try:
                return _refuse_invalid(envelope(frame), exc)
            except msgspec.DecodeError:
                return Refusal(InvalidOp(_NOT_OBJECT))
        except msgspec.DecodeError:
            what = "MessagePack" if self.binary else "JSON"
            return Refusal(MalformedFrame(f"frame is not valid {what}"))

    def encode(self, obj: Any) -> bytes:
        """A server frame's payload (UTF-8 JSON text, or MessagePack)."""
        return _msgpack_encode(obj) if self.binary else _json_encode(obj)


_json_encode = msgspec.json.Encoder().encode
_msgpack_encode = msgspec.msgpack.Encoder().encode
_Decoders = tuple[Callable[[Any], Any], Callable[[Any], _Envelope]]
_DECODERS: Final[dict[bool, _Decoders]] = {
    False: (msgspec.json.Decoder(ClientOp).decode, msgspec.json.Decoder(_Envelope).decode),
    True: (msgspec.msgpack.Decoder(ClientOp).decode, msgspec.msgpack.Decoder(_Envelope).decode),
}
JSON_CODEC: Final = Codec(SUBPROTOCOL_JSON, binary=False)
MSGPACK_CODEC: Final = Codec(SUBPROTOCOL_MSGPACK, binary=True)
DEFAULT_CODEC: Final = Codec(None, binary=False)


def negotiate(offered: list[str] | tuple[str, ...]) -> Codec:
    """The codec for the subprotocols a client offered (``Sec-WebSocket-Protocol``).

    RFC 6455 §4.1 has the client list them "ordered by preference", and
    §4.2.2 has the server select one of them (or none): the first one hubbub
    speaks wins. A client that offers none gets JSON, no subprotocol named.

    Raises:
        InvalidRequest: the client offered subprotocols, none of them hubbub's;
            refuse the handshake.
    """
    if not offered:
        return DEFAULT_CODEC
    for name in offered:
        if name == SUBPROTOCOL_JSON:
            return JSON_CODEC
        if name == SUBPROTOCOL_MSGPACK:
            return MSGPACK_CODEC
    raise InvalidRequest(
        f"no supported subprotocol: offer {SUBPROTOCOL_JSON} or {SUBPROTOCOL_MSGPACK}",
        field="Sec-WebSocket-Protocol",
    )


def fit_reason(reason: str) -> str:
    """``reason`` cut to the 123 UTF-8 bytes a close frame can carry, on a character boundary."""
    raw = reason.encode()
    if len(raw) <= MAX_REASON_BYTES:
        return reason
    return raw[:MAX_REASON_BYTES].decode(errors="ignore")


# -- group deliveries --------------------------------------------------------------

#: The first pair of every cached MessagePack ``msg`` frame: ``"op": "msg"``.
_OP_MSG: Final = b"\xa2op\xa3msg"


def delivery_json(
    message: Message, lease: str, attempt: int, deadline: int, *, sub: int | None = None
) -> bytes:
    """A group delivery as JSON: the message object with its lease in front.

    With ``sub``, the WebSocket ``msg`` frame of group subscription ``sub``;
    without, an item of an HTTP pull. Either way the message part is its
    cached JSON, spliced in, not serialized again.
    """
    head = b'{"op":"msg","sub":%d,' % sub if sub is not None else b"{"
    return (
        head + b'"lease":' + _json_encode(lease)
        + b',"attempt":%d,"deadline":%d,' % (attempt, deadline)
        + message.to_json()[1:]
    )


def delivery_msgpack(message: Message, lease: str, attempt: int, deadline: int, sub: int) -> bytes:
    """The MessagePack ``msg`` frame of a group delivery (see :func:`delivery_json`).

    The lease pairs are spliced into the message's cached frame, a fixmap
    (MessagePack spec: "fixmap stores a map whose length is upto 15
    elements", type byte ``0x80 | N``) that starts with ``"op": "msg"``.
    """
    extra = {"sub": sub, "lease": lease, "attempt": attempt, "deadline": deadline}
    cached = message.ws_msgpack()
    size = cached[0] & 0x0F
    if cached[0] & 0xF0 != 0x80 or size + len(extra) > 15 or not cached.startswith(_OP_MSG, 1):
        return _msgpack_encode({"op": "msg", **extra, **message.to_dict()})
    pairs = b"".join(_msgpack_encode(k) + _msgpack_encode(v) for k, v in extra.items())
    return bytes([0x80 | (size + len(extra))]) + _OP_MSG + pairs + cached[1 + len(_OP_MSG):]
