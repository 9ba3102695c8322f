"""Cursors: where a reader stands in the log (pure: no asyncio, no I/O).

Theory of operation
-------------------
Every stored message has two positions:

* its *offset* in its topic (1, 2, 3, ... within the topic's current epoch);
* its *seq*, a store-wide sequence that grows with every append, whatever the
  topic. Within one topic, offset order and seq order agree.

A cursor is the triple ``(epoch, offset, seq)`` written as
``"<epoch>.<offset>.<seq>"``, e.g. ``"k3j9qzx2ab.42.1057"``. Clients treat
it as opaque. Every message carries the cursor that points just after it, and
that one string resumes every kind of subscription (the invariants below).

Invariants
----------
"topic epoch resumes offset": On one topic, a cursor whose epoch is the
    topic's epoch resumes at ``offset + 1``. An older epoch of the same topic,
    or an epoch the store does not know, means the log was reset or lost:
    that is a *gap*.
"seq is the watermark": Over several topics or patterns, a cursor resumes at
    ``seq + 1``: messages are delivered in seq order, so every matching
    message with a seq at or below the cursor's was already delivered. Topics
    that appear later have larger seqs and are picked up with nothing lost.
    This is the watermark for topics that appear later.
"store epoch names a position": A cursor whose epoch is the *store's* epoch
    (a "watermark cursor", offset 0) names a position in the store, not in a
    topic. Streams hand one out before their first message so that a client
    can resume even a subscription that has received nothing yet.
"foreign cursor refused": A cursor from another topic on a single-topic door
    is refused (``InvalidCursor``), never silently reinterpreted.

The words ``start`` and ``end`` are accepted wherever a cursor is: the start
of retained history, and the current end of the log.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Final, Literal

from .errors import InvalidCursor

EPOCH_LENGTH: Final = 10
MAX_POSITION: Final = 2**63 - 1
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_CURSOR_RE = re.compile(r"([0-9a-z]{10})\.(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})")

START: Final = "start"
END: Final = "end"
Anchor = Literal["start", "end"]


def new_epoch() -> str:
    """A fresh random epoch id (about 51 bits of randomness)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(EPOCH_LENGTH))


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the log; see the module docstring for how it resumes."""

    epoch: str
    offset: int
    seq: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.offset}.{self.seq}"

    def encode(self) -> str:
        return f"{self.epoch}.{self.offset}.{self.seq}"


def encode(epoch: str, offset: int, seq: int) -> str:
    """The text of the cursor ``(epoch, offset, seq)``."""
    return f"{epoch}.{offset}.{seq}"


def decode(text: str, *, field: str = "after") -> Cursor:
    """Parse a cursor's text.

    Raises:
        InvalidCursor: ``text`` is not a cursor hubbub could have issued.
    """
    if not isinstance(text, str):
        raise InvalidCursor("cursor must be a string", field=field)
    m = _CURSOR_RE.fullmatch(text)
    if m is None:
        raise InvalidCursor("malformed cursor", field=field)
    offset, seq = int(m.group(2)), int(m.group(3))
    if offset > MAX_POSITION or seq > MAX_POSITION:
        raise InvalidCursor("cursor position out of range", field=field)
    return Cursor(m.group(1), offset, seq)


def parse_after(text: str | None, *, field: str = "after") -> Cursor | Anchor | None:
    """Parse an ``after`` argument: a cursor, ``"start"``, ``"end"`` or ``None``.

    Raises:
        InvalidCursor: anything else.
    """
    if text is None:
        return None
    if text == START:
        return START
    if text == END:
        return END
    return decode(text, field=field)
