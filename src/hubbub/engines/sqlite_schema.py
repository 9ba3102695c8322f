"""The SQLite store's tables and statements, and the writer's copy of a topics row (pure).

No I/O here: :mod:`hubbub.engines.sqlite_writer` runs the writes and
:mod:`hubbub.engines.sqlite_reads` the reads. The tables of consumer groups
and records are in :mod:`hubbub.engines.sqlite_groups` and
:mod:`hubbub.engines.sqlite_records`; :data:`SCHEMA` creates them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from . import sqlite_groups as groups
from . import sqlite_records as records

SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS topics (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
        epoch TEXT NOT NULL UNIQUE, created INT NOT NULL, start_seq INT NOT NULL,
        last_offset INT NOT NULL, last_seq INT NOT NULL, trim_offset INT NOT NULL,
        trim_seq INT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, topic_id INT NOT NULL,
        offset INT NOT NULL, time INT NOT NULL, id TEXT NOT NULL, content_type TEXT NOT NULL,
        data BLOB NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS messages_offset ON messages (topic_id, offset)",
    "CREATE INDEX IF NOT EXISTS messages_seq ON messages (topic_id, seq)",
    # A key keeps a copy of its message: a duplicate must be answered with the
    # original even after retention removed the message itself.
    """CREATE TABLE IF NOT EXISTS keys (topic_id INT NOT NULL, key TEXT NOT NULL,
        created INT NOT NULL, seq INT NOT NULL, offset INT NOT NULL, time INT NOT NULL,
        id TEXT NOT NULL, content_type TEXT NOT NULL, data BLOB NOT NULL,
        PRIMARY KEY (topic_id, key))""",
    "CREATE INDEX IF NOT EXISTS keys_created ON keys (created)",
    *groups.SCHEMA,
    *records.SCHEMA,
)
INSERT_MESSAGE: Final = "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)"
INSERT_KEY: Final = "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
FIND_KEY: Final = ("SELECT created, seq, offset, time, id, data, content_type FROM keys"
                   " WHERE topic_id = ? AND key = ?")
UPSERT_TOPIC: Final = (
    "INSERT INTO topics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
    " last_offset = excluded.last_offset, last_seq = excluded.last_seq,"
    " trim_offset = excluded.trim_offset, trim_seq = excluded.trim_seq")
DELETE: Final = ("DELETE FROM messages WHERE topic_id = ? AND offset > ? AND offset <= ?"
                 " RETURNING seq")
INFO: Final = ("SELECT name, epoch, trim_offset + 1, last_offset, last_seq, start_seq,"
               " trim_offset, trim_seq, created FROM topics")
SELECT: Final = "SELECT topic_id, offset, seq, time, id, data, content_type FROM messages"


@dataclass(slots=True, eq=False)
class Topic:
    """The writer's copy of a topics row. Retained offsets: ``trim_offset+1..last_offset``."""

    id: int
    name: str
    epoch: str
    created: int
    start_seq: int
    last_offset: int
    last_seq: int
    trim_offset: int
    trim_seq: int

    def row(self) -> tuple[Any, ...]:
        return (self.id, self.name, self.epoch, self.created, self.start_seq,
                self.last_offset, self.last_seq, self.trim_offset, self.trim_seq)

