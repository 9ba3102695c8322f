"""Exceptions raised by hubbub.

Every error a peer can cause carries a stable ``code`` (a short kebab-case
string that clients may switch on), whether a retry can help (``temporary``),
and, where one is to blame, the offending ``field``. The core never picks an
HTTP status or a WebSocket close code: :mod:`hubbub.transports.problems` maps
each class to both in one table at the edge.

The tree::

    HubbubError
    ├── PeerError                 the peer sent bad input; tell it, carry on
    │   ├── InvalidRequest        malformed body, query or frame (400)
    │   │   ├── InvalidTopic      topic name or pattern breaks the grammar
    │   │   ├── InvalidCursor     cursor is not one hubbub issued (or another topic's)
    │   │   ├── InvalidOp         unknown or malformed WebSocket op
    │   │   │   └── MalformedFrame  not JSON or MessagePack at all
    │   │   └── TooDeep           JSON nests deeper than the limit (400, close 1007)
    │   ├── Unauthorized          no or bad credentials (401)
    │   ├── Forbidden             credentials do not allow this action (403)
    │   ├── Misdirected           a Host name this hub does not serve (421)
    │   ├── NotFound              no such thing (404)
    │   ├── Conflict              the request conflicts with state (409)
    │   │   └── GapError          history was lost past the cursor (409)
    │   ├── Expired               a reply came after its request's deadline (410)
    │   │   └── UploadExpired     the upload's expiry passed (410)
    │   ├── PreconditionFailed    an unsupported protocol version (412)
    │   ├── PayloadTooLarge       message or frame over the limit (413)
    │   ├── UnsupportedMediaType  (415)
    │   ├── Locked                another request is writing the same upload (423)
    │   ├── LimitExceeded         a configured abuse limit is reached (429)
    │   └── ChecksumMismatch      a body does not match its checksum (460)
    ├── Unavailable               the store cannot be reached; retry later (503)
    ├── NoResponders              a request's topic has no responder at all (503)
    ├── ResponderError            a request's responder failed and said why (502)
    ├── GatewayTimeout            no responder replied to a request in time (504)
    ├── SlowConsumer              a subscriber fell too far behind its buffer
    └── UsageError                the caller misused the Python API (a bug
                                  in the calling code, never sent to peers)

``UsageError`` is kept apart from ``PeerError`` as websockets keeps
``InvalidState`` apart from ``ProtocolError``: one is our caller's bug, the
other is input we must survive.
"""

from __future__ import annotations

from typing import Any


class HubbubError(Exception):
    """Base class of every hubbub exception.

    Attributes:
        code: stable machine-readable identifier, e.g. ``"invalid-topic"``.
        temporary: whether retrying the same request later can succeed.
        field: the request field at fault (``"topic"``, ``"after"``...), if any.
    """

    code = "error"
    temporary = False
    #: Set by the client on errors the hub reported: the HTTP status (0 for
    #: WebSocket and SSE errors) and the whole problem document (RFC 9457).
    status: int | None = None
    problem: dict[str, Any] | None = None

    def __init__(self, message: str, *, field: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The fields a peer may see: code, message, field and extras."""
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        out.update(self.extra)
        return out


class PeerError(HubbubError):
    """The peer sent something we cannot accept; it gets told, the hub carries on."""


class InvalidRequest(PeerError):
    code = "invalid-request"


class InvalidTopic(InvalidRequest):
    code = "invalid-topic"


class InvalidCursor(InvalidRequest):
    code = "invalid-cursor"


class InvalidOp(InvalidRequest):
    code = "invalid-op"


class MalformedFrame(InvalidOp):
    """A frame that is not JSON (or MessagePack) at all; the connection closes."""

    code = "malformed-frame"


class TooDeep(InvalidRequest):
    """JSON that nests deeper than ``[limits] json_depth``; refused before decoding."""

    code = "too-deep"


class Unauthorized(PeerError):
    code = "unauthorized"


class Forbidden(PeerError):
    code = "forbidden"


class Misdirected(PeerError):
    """The request names a host this hub does not serve (DNS rebinding, a wrong proxy)."""

    code = "misdirected-request"


class NotFound(PeerError):
    code = "not-found"


class Conflict(PeerError):
    code = "conflict"


class GapError(Conflict):
    """History between the cursor and the log's retained start was lost.

    Raised only where a transport cannot say "gap" in-band (HTTP polls answer
    409). ``extra`` carries ``topic``, ``from``, ``to``, ``reason`` and the
    ``cursor`` from which the caller may knowingly continue.
    """

    code = "gap"


class Expired(PeerError):
    """A reply to a request whose deadline has passed; nothing was stored."""

    code = "request-expired"


class UploadExpired(Expired):
    """A tus upload whose expiry passed: it cannot be resumed."""

    code = "upload-expired"


class PreconditionFailed(PeerError):
    """The request asks for a protocol version the hub does not speak."""

    code = "precondition-failed"


class PayloadTooLarge(PeerError):
    code = "payload-too-large"


class UnsupportedMediaType(PeerError):
    code = "unsupported-media-type"


class Locked(PeerError):
    """Another request is writing the same upload; retry once it is done."""

    code = "locked"
    temporary = True


class LimitExceeded(PeerError):
    """A configured limit (``[limits]``) is reached: too many topics, connections or
    subscriptions for the principal or the hub. ``extra`` names the ``limit``."""

    code = "limit-exceeded"


class ChecksumMismatch(PeerError):
    """A body's digest differs from the one its request declared; nothing was stored."""

    code = "checksum-mismatch"


class Unavailable(HubbubError):
    code = "unavailable"
    temporary = True


class NoResponders(HubbubError):
    """A request was made to a topic that no consumer group's worker takes; nothing
    was published. A retry helps once a responder is there."""

    code = "no-responders"
    temporary = True


class ResponderError(HubbubError):
    """The responder that took a request failed, and sent its error as the reply."""

    code = "responder-error"


class GatewayTimeout(HubbubError):
    """No responder replied to a request before its timeout."""

    code = "timeout"
    temporary = True


class SlowConsumer(HubbubError):
    """A subscriber's outbound buffer overflowed; it must resume from ``cursor``."""

    code = "slow-consumer"
    temporary = True


class UsageError(HubbubError):
    """The calling code misused the API (wrong state, wrong argument type)."""

    code = "usage-error"
