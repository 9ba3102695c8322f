"""The values that cross the core's API: what a publish carries, what a poll
returns, payloads encoded once at the edge of the core, and idempotency keys
scoped to their owner.

What the store answers and the core hands on unchanged (a publish's
:class:`AppendResult`, a group's :class:`Lease` and :class:`GroupInfo`) is
named here too, so the doors take it from the core and know nothing of
storage."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..engines.base import AppendResult, GroupInfo, Lease
from ..protocol.errors import InvalidRequest
from ..protocol.message import JSON, Message
from .subscription import Gap

_json_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class PublishItem:
    """One message to publish. ``data`` is JSON text when ``content_type`` is JSON."""

    topic: str
    data: bytes
    content_type: str = JSON
    key: str | None = None
    #: Whose ``key`` it is (the publisher's subject): see :func:`scoped_key`.
    owner: str | None = None


@dataclass(slots=True)
class Page:
    """What a poll returns: messages, gaps met on the way, and the cursor to go on from."""

    messages: list[Message]
    cursor: str
    gaps: list[Gap] = field(default_factory=list)


def encode_value(value: Any, *, field: str = "data") -> tuple[bytes, str]:
    """A Python value as a payload: bytes stay bytes, anything else becomes JSON."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value), "application/octet-stream"
    try:
        return _json_encode(value), JSON
    except (TypeError, msgspec.EncodeError):
        raise InvalidRequest("data cannot be encoded as JSON", field=field) from None


def scoped_key(key: str, owner: str | None) -> str:
    """The idempotency key as stored: scoped to its owner when it has one, so a
    principal reusing another's key publishes its own message instead of
    getting the other's receipt. A space never occurs in a key a client gives,
    so a scoped key never equals an unscoped one."""
    if owner is None:
        return key
    digest = hashlib.sha256(owner.encode(errors="surrogateescape")).hexdigest()[:24]
    return f"{key} {digest}"


__all__ = ["AppendResult", "GroupInfo", "Lease", "Page", "PublishItem", "encode_value",
           "scoped_key"]
