"""The values that cross the core's API: what a publish carries, what a poll
returns, and payloads checked and encoded once at the edge of the core."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..protocol.errors import InvalidRequest
from ..protocol.message import JSON, Message
from .subscription import Gap

_json_decode = msgspec.json.Decoder().decode
_json_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class PublishItem:
    """One message to publish. ``data`` is JSON text when ``content_type`` is JSON."""

    topic: str
    data: bytes
    content_type: str = JSON
    key: str | None = None


@dataclass(slots=True)
class Page:
    """What a poll returns: messages, gaps met on the way, and the cursor to go on from."""

    messages: list[Message]
    cursor: str
    gaps: list[Gap] = field(default_factory=list)


def compact_json(data: bytes, *, field: str = "data") -> bytes:
    """Validate JSON text and return it compact (one line, as SSE needs).

    Raises:
        InvalidRequest: ``data`` is not valid JSON.
    """
    try:
        return _json_encode(_json_decode(data))
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise InvalidRequest("malformed JSON", field=field) from None


def encode_value(value: Any, *, field: str = "data") -> tuple[bytes, str]:
    """A Python value as a payload: bytes stay bytes, anything else becomes JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), "application/octet-stream"
    try:
        return _json_encode(value), JSON
    except (TypeError, msgspec.EncodeError):
        raise InvalidRequest("data cannot be encoded as JSON", field=field) from None


__all__ = ["Page", "PublishItem", "compact_json", "encode_value"]
