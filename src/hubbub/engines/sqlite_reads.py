"""The read statements of the SQLite store, and the readers' cache of topic ids.

Plain code on a read-only connection: :class:`~hubbub.engines.sqlite.SQLiteEngine`
runs each read in place on the event loop's thread or on its reader pool
(:mod:`hubbub.engines.sqlite`, invariant "readers never block the writer" and
trade-off "reads run in place first"), and the writer runs :func:`select_seq`
on its own connection for the new messages of a claim.
"""

from __future__ import annotations

import heapq
import sqlite3
from typing import Any, Final

from ..protocol.message import Message
from .sqlite_schema import SELECT

#: read_seq over more topics than this walks seq order instead of merging per topic.
MERGE_TOPICS: Final = 32


class Reads:
    """The reads of messages, with the readers' cache of topic ids and names.

    A topic's id and epoch never change while its row lives, so they are
    cached; :meth:`forget` drops a deleted topic's name.
    """

    def __init__(self) -> None:
        self._ids: dict[str, tuple[int, str]] = {}  # readers' cache: name -> (id, epoch)
        self._names: dict[int, tuple[str, str]] = {}  # readers' cache: id -> (name, epoch)

    def forget(self, name: str) -> None:
        """Readers cache a name's id and epoch as never changing: this one did."""
        self._ids.pop(name, None)

    def topic_id(self, conn: sqlite3.Connection, name: str) -> tuple[int, str] | None:
        """``(id, epoch)`` of a topic; neither ever changes, so they are cached."""
        hit = self._ids.get(name)
        if hit is None:
            row = conn.execute("SELECT id, epoch FROM topics WHERE name = ?", (name,)).fetchone()
            if row is not None:
                hit = self._ids[name] = (row[0], row[1])
                self._names[row[0]] = (name, row[1])
        return hit

    def messages(self, conn: sqlite3.Connection, rows: Any) -> list[Message]:
        out, names = [], self._names
        for tid, o, s, t, i, d, c in rows:
            name = names.get(tid)
            if name is None:
                r = conn.execute("SELECT name, epoch FROM topics WHERE id = ?", (tid,)).fetchone()
                name = names[tid] = (r[0], r[1])
            out.append(Message(name[0], name[1], o, s, t, i, d, c))
        return out

    def read_topic(
        self, conn: sqlite3.Connection, topic: str, after: int, limit: int
    ) -> list[Message]:
        hit = self.topic_id(conn, topic)
        if hit is None:
            return []
        rows = conn.execute(f"{SELECT} WHERE topic_id = ? AND offset > ? ORDER BY offset LIMIT ?",
                            (hit[0], after, limit))
        return self.messages(conn, rows)

    def read_before(
        self, conn: sqlite3.Connection, topic: str, before: int, limit: int
    ) -> list[Message]:
        hit = self.topic_id(conn, topic)
        if hit is None:
            return []
        rows = conn.execute(
            f"{SELECT} WHERE topic_id = ? AND offset < ? ORDER BY offset DESC LIMIT ?",
            (hit[0], before, limit))
        return self.messages(conn, rows)[::-1]

    def read_seq(
        self, conn: sqlite3.Connection, names: list[str] | None, after: int, limit: int
    ) -> list[Message]:
        if names is None:
            return self.messages(conn, conn.execute(
                f"{SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)))
        ids = [hit[0] for n in names if (hit := self.topic_id(conn, n)) is not None]
        if not ids:
            return []
        conn.execute("BEGIN")  # one snapshot for every statement below
        try:
            return self.messages(conn, select_seq(conn, ids, after, limit))
        finally:
            conn.execute("COMMIT")


def select_seq(conn: sqlite3.Connection, ids: list[int], after: int, limit: int) -> list[Any]:
    """Message rows of the topics ``ids`` with seq > ``after``, in seq order, at most ``limit``."""
    if len(ids) <= MERGE_TOPICS:
        # Each topic's next ``limit`` by its (topic_id, seq) index, merged.
        one = f"{SELECT} WHERE topic_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        runs = [conn.execute(one, (i, after, limit)).fetchall() for i in ids]
        return list(heapq.merge(*runs, key=lambda r: r[2]))[:limit]
    # Many topics: walk seq order; ``+`` keeps the planner on the seq key.
    rows: list[Any] = conn.execute(
        f"{SELECT} WHERE seq > ? AND +topic_id IN (SELECT value FROM json_each(?))"
        " ORDER BY seq LIMIT ?", (after, str(ids), limit)).fetchall()
    return rows

