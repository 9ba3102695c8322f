"""Consumer-group leases: the life of one delivery (pure: no asyncio, no I/O).

Theory of operation
-------------------
A consumer group shares one position in a set of topics among many workers.
Each message the group takes gets a *pending entry*; the entry lives until the
message is acked or dead-lettered. An entry is in one of these states:

=============  =================================================================
state          meaning
=============  =================================================================
``LEASED``     handed to one worker until ``deadline``; only that worker's
               lease id settles it
``WAITING``    nobody holds it: it was nacked, or its lease ran out; it is
               *due* again at ``deadline``
``DONE``       acked; the entry is removed
``DEAD``       delivered ``max_deliver`` times without an ack; the entry is
               removed and the message goes to the dead-letter topic
=============  =================================================================

Invariants
----------
"due at the deadline": An entry is *due* when ``deadline <= now``, whatever
    its state: a lease that ran out is as good as a nack with no delay.
"due entries first": Pulls take due entries first (oldest seq first), then
    new messages. Taking a due entry whose ``attempts`` reached
    ``max_deliver`` makes it ``DEAD`` instead of leasing it again.
"only the current lease settles": Every lease gets a fresh lease id. A settle
    (ack, nack, extend) names a lease id; it applies only while that id is the
    entry's current one, even after the deadline passed, as long as nobody
    else took it since. A settle for an id that was replaced is ``expired``;
    for an id the group never gave, ``unknown``. Neither changes anything.
"engines apply atomically": Engines apply these invariants atomically per
    pull and per settle; this module only decides.
"""

from __future__ import annotations

import base64
import enum
import re
import secrets
from dataclasses import dataclass
from typing import Final

import msgspec

from .cursor import MAX_POSITION
from .errors import InvalidRequest
from .message import Message

_LEASE_RE = re.compile(r"(0|[1-9][0-9]{0,18})\.([0-9a-f]{12})")
_GROUP_RE = re.compile(r"[A-Za-z0-9_\-:@]{1,64}")
_encode = msgspec.json.Encoder().encode

DEAD_LETTER_NAMESPACE: Final = "dlq"


class State(enum.Enum):
    LEASED = "leased"
    WAITING = "waiting"
    DONE = "done"
    DEAD = "dead"


class Outcome(enum.Enum):
    """What a settle did to one lease id (invariant "only the current lease settles")."""

    OK = "ok"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


#: (state, event) -> next state. "take" is a pull reaching a due entry.
TRANSITIONS: Final[dict[tuple[State, str], State]] = {
    (State.LEASED, "ack"): State.DONE,
    (State.LEASED, "nack"): State.WAITING,
    (State.LEASED, "extend"): State.LEASED,
    (State.LEASED, "expire"): State.WAITING,
    (State.WAITING, "take"): State.LEASED,
    (State.WAITING, "take-last"): State.DEAD,
}


@dataclass(slots=True)
class Pending:
    """One pending entry of a group (see the module docstring)."""

    seq: int
    topic: str
    offset: int
    attempts: int
    lease_id: str | None
    deadline: int
    last_error: str | None = None

    def state(self, now: int) -> State:
        if self.lease_id is not None and self.deadline > now:
            return State.LEASED
        return State.WAITING

    def due(self, now: int) -> bool:
        """Invariant "due at the deadline"."""
        return self.deadline <= now


def take(entry: Pending, now: int, lease_ms: int, max_deliver: int) -> State:
    """Apply invariant "due entries first" to a due entry: lease it again (new id)
    or declare it dead."""
    if entry.attempts >= max_deliver:
        return TRANSITIONS[(State.WAITING, "take-last")]
    entry.attempts += 1
    entry.lease_id = new_lease_id(entry.seq)
    entry.deadline = now + lease_ms
    return TRANSITIONS[(State.WAITING, "take")]


def new_lease_id(seq: int) -> str:
    """A fresh lease id for the entry of ``seq``: ``"<seq>.<12 hex>"``."""
    return f"{seq}.{secrets.token_hex(6)}"


def parse_lease_id(text: object, *, field: str = "ids") -> int:
    """The seq a lease id names.

    Raises:
        InvalidRequest: ``text`` is not a lease id hubbub could have issued.
    """
    if not isinstance(text, str) or (m := _LEASE_RE.fullmatch(text)) is None:
        raise InvalidRequest("malformed lease id", field=field)
    seq = int(m.group(1))
    if seq > MAX_POSITION:  # 19 digits reach past a store's 64-bit integers
        raise InvalidRequest("malformed lease id", field=field)
    return seq


def validate_group(name: str, *, field: str = "group") -> str:
    """Return ``name`` if it is a valid group name (one topic token, at most 64 chars).

    Raises:
        InvalidRequest: it is not.
    """
    if not isinstance(name, str) or _GROUP_RE.fullmatch(name) is None:
        raise InvalidRequest(
            "group name must be 1-64 characters of [A-Za-z0-9_-:@]", field=field
        )
    return name


def dead_letter_topic(group: str) -> str:
    """The topic a group's dead messages go to."""
    return f"{DEAD_LETTER_NAMESPACE}.{group}"


def dead_letter_payload(group: str, msg: Message, attempts: int, error: str | None) -> bytes:
    """The JSON stored in the dead-letter topic for a message that ran out of tries."""
    body: dict[str, object] = {
        "group": group, "topic": msg.topic, "offset": msg.offset, "cursor": msg.cursor,
        "id": msg.id, "time": msg.time, "attempts": attempts, "error": error,
    }
    if msg.is_json:
        body["data"] = msgspec.Raw(msg.data)
    else:
        body["content_type"] = msg.content_type
        body["data"] = base64.b64encode(msg.data).decode()
    return _encode(body)
