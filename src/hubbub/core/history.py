"""History from the end: the newest messages of a topic, a page at a time, going back.

Centrifugo calls it ``reverse``; a chat shows its last 50 lines this way::

    page = await read_before(hub.engine, "chat.room1", "end", 50)
    show(page.messages)                 # oldest first
    older = await read_before(hub.engine, "chat.room1", page.prev, 50)
    sub = await hub.subscribe(["chat.room1"], page.cursor)   # and follow live

Positions sit *between* messages: a cursor names the place right after its
message (:mod:`hubbub.protocol.cursor`). ``before=C`` reads the messages
before that place, so the message whose cursor ``C`` is comes last in the
page. The rules:

* A page holds at most ``limit`` messages, the newest ones before the place,
  oldest first.
* ``prev`` is the place before the page's oldest message: ``before=prev``
  reads the page before this one. It is ``None`` when the page reaches the
  oldest message retained: there is nothing older to read.
* ``cursor`` is the place after the page's newest message, as if the page
  had been read forwards: ``after=cursor`` reads on from there. For
  ``before=end`` that is the end of the log when it was read, so following
  it live gets every later message once, none of the page again.
* Paging back over a whole topic (``end``, then each ``prev`` in turn) gives
  every retained message once; messages stored meanwhile go to the end and
  never shift the pages (offsets never change).
* A cursor of an earlier epoch of the topic (the log was deleted or lost)
  is a gap: :class:`~hubbub.protocol.errors.GapError`, as polls answer, with
  the ``cursor`` of the current end. A cursor of another topic, ahead of the
  log or not naming a message place (a watermark) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..engines.base import Engine
from ..protocol import cursor as _cursor
from ..protocol.errors import GapError, InvalidCursor
from ..protocol.message import Message

FIELD = "before"


@dataclass(frozen=True, slots=True)
class History:
    """A page of history read backwards: its messages (oldest first), ``prev``
    to read further back (``None``: nothing older) and ``cursor`` to read on."""

    messages: list[Message]
    prev: str | None
    cursor: str


async def read_before(engine: Engine, topic: str, before: str, limit: int) -> History:
    """The newest ``limit`` messages of ``topic`` before ``before`` (a cursor of the
    topic, or ``"end"``); see the module's rules.

    Raises:
        InvalidCursor: ``before`` is malformed, another topic's, a watermark, or
            ahead of the log.
        GapError: ``before`` is of an earlier epoch of the topic.
    """
    info = await engine.topic(topic)
    if before == _cursor.END:
        if info is None:
            # Nothing stored yet: the store's watermark follows the topic from here.
            end = _cursor.encode(engine.store_epoch, 0, await engine.head_seq())
            return History([], None, end)
        # Bounded by the info, not by what the store holds when it reads: a
        # message stored meanwhile is after ``cursor`` and read live instead.
        last, here = info.last_offset, _cursor.encode(info.epoch, info.last_offset, info.last_seq)
    else:
        at = _cursor.decode(before, field=FIELD)
        known = await engine.lookup_epoch(at.epoch)
        if known is None or (known.topic == topic and not known.current):
            end = (_cursor.encode(engine.store_epoch, 0, await engine.head_seq()) if info is None
                   else _cursor.encode(info.epoch, info.last_offset, info.last_seq))
            raise GapError("the topic's log was reset since the cursor was issued",
                           field=FIELD, topic=topic, reason="epoch", cursor=end)
        if known.topic is None:
            raise InvalidCursor("a watermark cursor names no place in the topic; "
                                "use before=end", field=FIELD)
        if known.topic != topic:
            raise InvalidCursor("cursor belongs to another topic", field=FIELD)
        assert info is not None
        if at.offset > info.last_offset or at.seq > info.last_seq:
            raise InvalidCursor("cursor is ahead of the log", field=FIELD)
        last, here = at.offset, at.encode()
    messages = await engine.read_before(topic, last + 1, limit)
    prev = None
    if messages and len(messages) == limit:
        oldest = messages[0]
        if oldest.offset > info.first_offset:
            prev = _cursor.encode(oldest.epoch, oldest.offset - 1, oldest.seq - 1)
    return History(messages, prev, here)
