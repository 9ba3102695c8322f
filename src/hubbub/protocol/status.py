"""The one table from errors to HTTP statuses and WebSocket close codes (pure).

The hub's edge (:mod:`hubbub.transports.problems`) reads it forwards, the
client (:mod:`hubbub.client`) backwards, so both always agree. Rows run from
the most specific class to the most general: the first row an error is an
instance of decides, and reading backwards, the last row with a given close
code names the most general class for it.
"""

from __future__ import annotations

from . import errors

#: error class -> (HTTP status, title, WebSocket close code for fatal errors)
TABLE: list[tuple[type[errors.HubbubError], int, str, int]] = [
    (errors.GapError, 409, "History lost", 4409),
    (errors.InvalidTopic, 400, "Invalid topic", 4400),
    (errors.InvalidCursor, 400, "Invalid cursor", 4400),
    # RFC 6455 §7.4.1: 1007 "data within a message that was not consistent with
    # the type of the message"; 1008 "a generic status code that can be returned
    # when there is no other more suitable status code" (a frame with no op or id).
    (errors.TooDeep, 400, "Nested too deep", 1007),
    (errors.MalformedFrame, 400, "Malformed frame", 1007),
    (errors.InvalidOp, 400, "Invalid operation", 1008),
    (errors.InvalidRequest, 400, "Invalid request", 4400),
    (errors.Unauthorized, 401, "Unauthorized", 4401),
    (errors.Forbidden, 403, "Forbidden", 4403),
    (errors.Misdirected, 421, "Misdirected request", 4421),
    (errors.NotFound, 404, "Not found", 4404),
    (errors.Conflict, 409, "Conflict", 4409),
    (errors.UploadExpired, 410, "Upload expired", 4410),
    (errors.Expired, 410, "Request expired", 4410),
    (errors.PreconditionFailed, 412, "Precondition failed", 4412),
    (errors.PayloadTooLarge, 413, "Payload too large", 1009),
    (errors.UnsupportedMediaType, 415, "Unsupported media type", 1003),
    (errors.Locked, 423, "Locked", 4423),
    # RFC 6585 §4: 429 Too Many Requests; 4029 is its private-use close code.
    (errors.LimitExceeded, 429, "Limit exceeded", 4029),
    # tus 1.0.0 (checksum): "460 Checksum Mismatch".
    (errors.ChecksumMismatch, 460, "Checksum mismatch", 4460),
    (errors.NoResponders, 503, "No responders", 1013),
    (errors.Unavailable, 503, "Service unavailable", 1013),
    (errors.ResponderError, 502, "Responder error", 4502),
    (errors.GatewayTimeout, 504, "Gateway timeout", 4504),
    (errors.SlowConsumer, 503, "Slow consumer", 4008),
]


def error_for_close(code: int) -> type[errors.HubbubError] | None:
    """The most general error class the hub closes a WebSocket with ``code`` for."""
    found = None
    for cls, _, _, close in TABLE:
        if close == code:
            found = cls
    return found
