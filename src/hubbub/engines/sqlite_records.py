"""Records in SQLite: the table and the statements of get, put, delete, scan and expire.

A record is a row of ``records``, keyed by its key (``WITHOUT ROWID``: the
primary key is the table's order, so a prefix is a key range). The writes
are plain functions on the writer's connection, already inside a write
transaction; :class:`~hubbub.engines.sqlite.SQLiteEngine` runs them as jobs
of its writer thread (:mod:`hubbub.engines.sqlite`, invariant
"one writer thread"), so a compare-and-set reads and writes in one
transaction that no other writer can interleave with. The reads (``get``,
``scan``) run on the reader pool and see the last commit, which is every
write that was answered.

An expired row stays in the table until :func:`expire` removes it (or a put
replaces it); every read treats it as absent, as the engine contract says.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Final

from .base import Record

SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, value BLOB NOT NULL,
        version INT NOT NULL, expires INT) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS records_expires ON records (expires) WHERE expires IS NOT NULL",
)

_LIVE: Final = "(expires IS NULL OR expires > ?)"
_GET: Final = f"SELECT key, value, version, expires FROM records WHERE key = ? AND {_LIVE}"
_UPSERT: Final = "INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)"
_DELETE: Final = "DELETE FROM records WHERE key = ?"


def _record(row: Any) -> Record:
    return Record(row[0], bytes(row[1]), row[2], row[3])


def _range(prefix: str) -> tuple[str, str | None]:
    """The key range ``[low, high)`` of the keys that start with ``prefix``.

    SQLite compares TEXT as UTF-8 bytes, which orders as code points do, so
    the keys with the prefix are those from the prefix up to (not including)
    the prefix with its last character's code point plus one.
    """
    if not prefix or ord(prefix[-1]) >= 0x10FFFF:
        return prefix, None
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _where_prefix(prefix: str) -> tuple[str, list[Any]]:
    low, high = _range(prefix)
    if high is None:
        return "key >= ? AND substr(key, 1, ?) = ?", [low, len(prefix), prefix]
    return "key >= ? AND key < ?", [low, high]


def get(conn: sqlite3.Connection, key: str, now: int) -> Record | None:
    """The live record, or ``None``."""
    row = conn.execute(_GET, (key, now)).fetchone()
    return None if row is None else _record(row)


def put(conn: sqlite3.Connection, key: str, value: bytes, now: int,
        expires: int | None, if_version: int | None) -> Record | None:
    """Write the record if ``if_version`` allows (see Engine.put); it as stored, or ``None``."""
    live = get(conn, key, now)
    version = live.version if live is not None else 0
    if if_version is not None and version != if_version:
        return None
    record = Record(key, bytes(value), version + 1, expires)
    conn.execute(_UPSERT, (key, record.value, record.version, expires))
    return record


def delete(conn: sqlite3.Connection, key: str, now: int, if_version: int | None) -> bool:
    """Remove the live record if ``if_version`` allows; whether one was removed."""
    live = get(conn, key, now)
    if live is None or (if_version is not None and live.version != if_version):
        return False
    conn.execute(_DELETE, (key,))
    return True


def scan(conn: sqlite3.Connection, prefix: str, now: int, limit: int) -> list[Record]:
    """Live records under ``prefix``, in key order, at most ``limit``."""
    where, args = _where_prefix(prefix)
    rows = conn.execute(
        f"SELECT key, value, version, expires FROM records WHERE {where} AND {_LIVE}"
        " ORDER BY key LIMIT ?", (*args, now, max(0, limit))).fetchall()
    return [_record(r) for r in rows]


def expire(conn: sqlite3.Connection, prefix: str, now: int, limit: int) -> list[Record]:
    """Remove and return the records under ``prefix`` that expired by ``now``, in key order."""
    where, args = _where_prefix(prefix)
    rows = conn.execute(
        f"SELECT key, value, version, expires FROM records WHERE {where}"
        " AND expires IS NOT NULL AND expires <= ? ORDER BY key LIMIT ?",
        (*args, now, max(0, limit))).fetchall()
    conn.executemany(_DELETE, [(r[0],) for r in rows])
    return [_record(r) for r in rows]
