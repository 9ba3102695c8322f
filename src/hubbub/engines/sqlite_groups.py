"""Consumer groups in SQLite: tables and the statements of create, claim and settle.

These are plain functions on a connection that is already inside a write
transaction; :class:`~hubbub.engines.sqlite.SQLiteEngine` runs them as jobs
of its writer thread, so each one is atomic and serialized with the appends
(:mod:`hubbub.engines.sqlite`, invariant "group changes are writes"). The
decisions are :func:`hubbub.protocol.leases.take`'s (:mod:`hubbub.protocol.leases`,
invariants "due entries first" and "only the current lease settles"); this
module only stores them.

A group is a row of ``groups``; each of its pending entries is a row of
``group_pending``, keyed by ``(group_id, seq)``. The ``(group_id, deadline)``
index finds the due entries (:mod:`hubbub.protocol.leases`, invariant
"due at the deadline") and the next deadline without a scan. Everything,
lease ids and deadlines included, is in those rows, so a group survives a
reopen or a ``kill -9`` as its last commit left it.

Every function raises :class:`~hubbub.protocol.errors.NotFound` for an unknown group
*before* it writes anything, so the writer can fail that job alone without
rolling back the others of its group commit.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

from ..protocol.errors import NotFound
from ..protocol.leases import (
    Outcome,
    Pending,
    State,
    dead_letter_payload,
    dead_letter_topic,
    new_lease_id,
    take,
)
from ..protocol.message import JSON, Message
from .base import AppendRequest, GroupInfo, Lease

SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
        patterns TEXT NOT NULL, delivered_seq INT NOT NULL, created INT NOT NULL)""",
    # ``topic_id``/``offset`` repeat what ``seq`` names in ``messages``: they
    # say which message an entry was for even after retention removed it.
    """CREATE TABLE IF NOT EXISTS group_pending (group_id INT NOT NULL, seq INT NOT NULL,
        topic_id INT NOT NULL, offset INT NOT NULL, attempts INT NOT NULL, lease_id TEXT,
        deadline INT NOT NULL, last_error TEXT, PRIMARY KEY (group_id, seq)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS group_pending_deadline ON group_pending (group_id, deadline)",
)

_GROUP: Final = ("SELECT g.id, g.name, g.patterns, g.delivered_seq, g.created,"
                 " (SELECT count(*) FROM group_pending p WHERE p.group_id = g.id)"
                 " FROM groups g WHERE g.name = ?")
# Due entries with their message (NULL columns once retention removed it), in
# the column order of the engine's message rows after the entry's own.
_DUE: Final = (
    "SELECT p.seq, p.offset, p.attempts, p.lease_id, p.deadline, p.last_error,"
    " m.topic_id, m.offset, m.seq, m.time, m.id, m.data, m.content_type"
    " FROM group_pending p LEFT JOIN messages m ON m.seq = p.seq"
    " WHERE p.group_id = ? AND p.deadline <= ? AND p.seq > ? ORDER BY p.seq LIMIT ?")
_INSERT_PENDING: Final = "INSERT INTO group_pending VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
_RELEASE: Final = ("UPDATE group_pending SET attempts = ?, lease_id = ?, deadline = ?"
                   " WHERE group_id = ? AND seq = ?")
_REMOVE: Final = "DELETE FROM group_pending WHERE group_id = ? AND seq = ?"
_NEXT_DUE: Final = "SELECT min(deadline) FROM group_pending WHERE group_id = ?"

#: A message row, ``(topic_id, offset, seq, time, id, data, content_type)``, as a Message.
MessageOf = Callable[[Sequence[Any]], Message]
#: Message rows of the claimed topics with seq > ``after``, in seq order, at most ``limit``.
ReadNew = Callable[[int, int], list[Sequence[Any]]]


def read_group(conn: sqlite3.Connection, name: str) -> GroupInfo | None:
    """The group as the connection sees it, or ``None``."""
    row = conn.execute(_GROUP, (name,)).fetchone()
    if row is None:
        return None
    _, name, patterns, delivered, created, pending = row
    return GroupInfo(name, tuple(json.loads(patterns)), delivered, pending, created)


def create_group(
    conn: sqlite3.Connection, name: str, patterns: Sequence[str], start_seq: int, now: int
) -> GroupInfo:
    """Insert the group unless it exists; return it as stored."""
    conn.execute(
        "INSERT INTO groups (name, patterns, delivered_seq, created) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (name) DO NOTHING", (name, json.dumps(list(patterns)), start_seq, now))
    info = read_group(conn, name)
    assert info is not None
    return info


def delete_group(conn: sqlite3.Connection, name: str) -> bool:
    """Delete the group and its pending entries; whether there was one."""
    row = conn.execute("SELECT id FROM groups WHERE name = ?", (name,)).fetchone()
    if row is None:
        return False
    conn.execute("DELETE FROM group_pending WHERE group_id = ?", (row[0],))
    conn.execute("DELETE FROM groups WHERE id = ?", (row[0],))
    return True


def _group_row(conn: sqlite3.Connection, name: str) -> tuple[int, int]:
    """``(id, delivered_seq)`` of the group.

    Raises:
        NotFound: no such group.
    """
    row = conn.execute("SELECT id, delivered_seq FROM groups WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no group {name!r}", field="group")
    return row[0], row[1]


def claim(
    conn: sqlite3.Connection,
    name: str,
    horizon: int,
    max_messages: int,
    lease_ms: int,
    max_deliver: int,
    now: int,
    message_of: MessageOf,
    read_new: ReadNew,
) -> tuple[list[Lease], list[AppendRequest], int | None]:
    """Lease due entries, then new messages up to ``horizon`` (see ``Engine.claim``).

    Returns the leases, the dead-letter appends the caller must make in the
    same transaction, and the earliest deadline still pending.

    Raises:
        NotFound: no such group (nothing was written).
    """
    gid, delivered = _group_row(conn, name)
    leases: list[Lease] = []
    dead: list[AppendRequest] = []
    after = 0
    # Due entries, oldest seq first, a page at a time: the statement is done
    # with before its rows are changed, and a claim never reads more entries
    # than it can still lease (dead and dropped ones do not count).
    while (want := max_messages - len(leases)) > 0:
        rows = conn.execute(_DUE, (gid, now, after, want)).fetchall()
        released, removed = [], []
        for seq, offset, attempts, lease_id, deadline, error, *msg_row in rows:
            if msg_row[0] is None:  # retention removed the message while it was pending
                removed.append((gid, seq))
                continue
            msg = message_of(msg_row)
            entry = Pending(seq, msg.topic, offset, attempts, lease_id, deadline, error)
            if take(entry, now, lease_ms, max_deliver) is State.DEAD:
                removed.append((gid, seq))
                payload = dead_letter_payload(name, msg, entry.attempts, entry.last_error)
                dead.append(AppendRequest(dead_letter_topic(name), payload, JSON))
                continue
            assert entry.lease_id is not None
            released.append((entry.attempts, entry.lease_id, entry.deadline, gid, seq))
            leases.append(Lease(entry.lease_id, msg, entry.attempts, entry.deadline))
        conn.executemany(_RELEASE, released)
        conn.executemany(_REMOVE, removed)
        if len(rows) < want:
            break
        after = rows[-1][0]
    # Then new messages, each a new entry on its first attempt.
    room, last = max_messages - len(leases), delivered
    if room > 0 and horizon > delivered:
        fresh = read_new(delivered, room)
        entries = []
        for row in fresh:
            msg = message_of(row)
            if msg.seq > horizon:
                break
            lease_id, deadline = new_lease_id(msg.seq), now + lease_ms
            entries.append((gid, msg.seq, row[0], msg.offset, 1, lease_id, deadline, None))
            leases.append(Lease(lease_id, msg, 1, deadline))
            last = msg.seq
        conn.executemany(_INSERT_PENDING, entries)
        if len(fresh) < room:  # nothing more of these topics up to the horizon
            last = max(last, horizon)
    if last != delivered:
        conn.execute("UPDATE groups SET delivered_seq = ? WHERE id = ?", (last, gid))
    next_due = conn.execute(_NEXT_DUE, (gid,)).fetchone()[0]
    return leases, dead, next_due


def settle(
    conn: sqlite3.Connection,
    name: str,
    leases: Sequence[tuple[int, str]],
    action: Literal["ack", "nack", "extend"],
    now: int,
    delay_ms: int,
    lease_ms: int,
    error: str | None,
) -> list[Outcome]:
    """Apply one action to ``(seq, lease_id)`` pairs, in order (:mod:`hubbub.protocol.leases`,
    invariant "only the current lease settles").

    Raises:
        NotFound: no such group (nothing was written).
    """
    gid, _ = _group_row(conn, name)
    out: list[Outcome] = []
    for seq, lease_id in leases:
        row = conn.execute("SELECT lease_id FROM group_pending WHERE group_id = ? AND seq = ?",
                           (gid, seq)).fetchone()
        if row is None:
            out.append(Outcome.UNKNOWN)
            continue
        if row[0] != lease_id:  # re-leased since, or nacked (nobody holds it)
            out.append(Outcome.EXPIRED)
            continue
        if action == "ack":
            conn.execute(_REMOVE, (gid, seq))
        elif action == "nack":
            conn.execute("UPDATE group_pending SET lease_id = NULL, deadline = ?, last_error = ?"
                         " WHERE group_id = ? AND seq = ?", (now + delay_ms, error, gid, seq))
        else:
            conn.execute("UPDATE group_pending SET deadline = ? WHERE group_id = ? AND seq = ?",
                         (now + lease_ms, gid, seq))
        out.append(Outcome.OK)
    return out
