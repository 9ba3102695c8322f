"""SQLiteEngine: the embedded durable store (one file, WAL, group commit).

Theory of operation
-------------------
Rule 1. One writer. A dedicated thread owns the only writing connection.
        ``append()``, ``trim()`` and the group methods (Rule 5) put a job on
        its queue and await a future. The thread takes *every* pending job
        (up to ``MAX_GROUP`` requests), runs them all in ONE transaction
        (``BEGIN IMMEDIATE`` ... ``COMMIT``) and only then answers: that is
        group commit. Under load many publishes share one commit; alone, a
        publish waits for nobody.
Rule 2. Each job is atomic on its own. Jobs assign positions and buffer rows
        in Python; the group's rows then reach SQLite in one ``executemany``
        per table. If that fails for a reason other than the store itself (a
        value SQLite cannot bind, a bug), the group is rolled back and run
        again with one ``SAVEPOINT`` per job, so only the job at fault fails.
        (A job that refuses its input, e.g. a claim for an unknown group,
        raises a :class:`~hubbub.protocol.errors.HubbubError` *before* it writes
        anything: it fails alone, with no rollback.) If the store fails
        (``sqlite3.OperationalError``: locked, I/O error, disk full), every
        job of the group fails with :class:`~hubbub.protocol.errors.Unavailable` and
        nothing of it was stored.
Rule 3. Answers follow the commit, in commit order. After ``COMMIT`` the
        thread schedules ONE callback on the event loop that advances
        ``head_seq``, calls each listener once with all new messages of the
        commit (of every job in it) in seq order, and then resolves the
        futures. The loop runs callbacks in the order they were scheduled, so
        listeners see seq order across commits too.
Rule 4. Positions are never reused. The writer keeps each topic's state
        (epoch, last offset and seq, trim point) in memory, loaded at open and
        reloaded from the database whenever a job or a commit fails. The
        topics row outlives every trim, so the store's seq (the largest
        ``last_seq``) and each topic's offsets only grow, across reopens too.
Rule 5. Consumer groups are writes. ``create_group()``, ``claim()`` and
        ``settle()`` are jobs of the writer like appends, in the same group
        commits (:mod:`hubbub.engines.sqlite_groups` has their statements).
        So a claim is atomic and serialized with every append; the
        dead-letter appends of a claim are made by the claim's own job, in the
        same transaction as the removal of their entries, and reach the
        listeners like any other append (Rule 3). A claim first writes the
        rows its group buffered so far: it sees the appends and trims
        queued before it.
Rule 6. Readers never block the writer. WAL lets a small pool of read-only
        connections (one per pool thread) read the last commit while the
        writer writes the next one. A read of several statements runs in one
        read transaction, so it sees one snapshot.
Rule 7. A read is first tried in place, on the event loop's thread, with a
        connection of its own that never waits for a lock (``busy_timeout``
        0) and is interrupted once it has run :data:`INLINE_MS` (a progress
        handler). Interrupted, busy or failed, the read goes to the pool
        (Rule 6), from the start. Most reads are a few pages in the OS's
        cache, and done in place they cost less than the hand-off: ``sqlite3``
        lets go of the GIL at every row it steps, and a pool thread has to win
        it back from the loop's thread for each one (benchmarks/PROFILES.md).
        A read that has to wait for the disk costs the loop at most the cap
        plus the one page read it is in when the cap passes.

Durability: with ``synchronous="NORMAL"`` (the default) in WAL mode, a commit
is written to the WAL file, not fsynced, before the publish (or claim, or
settle) is answered: it survives a crash of the process (``kill -9``) but
maybe not a power loss or an OS crash. ``synchronous="FULL"`` fsyncs each
group commit and survives those too, at the price of one fsync per group.

A cancelled ``append()`` may still be committed; the caller just does not hear
of it (an idempotency key makes the retry safe).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeVar, cast

from ..protocol.cursor import MAX_POSITION, new_epoch
from ..protocol.errors import HubbubError, Unavailable
from ..protocol.leases import Outcome, parse_lease_id
from ..protocol.message import Message
from . import sqlite_groups as groups
from . import sqlite_records as records
from .base import (
    DEFAULT_KEY_TTL_MS,
    AppendRequest,
    AppendResult,
    BlobStore,
    Claim,
    EpochInfo,
    ErrorListener,
    GroupInfo,
    Listener,
    Record,
    Retention,
    TopicInfo,
    record_kind,
)
from .blobs import file_blobs

#: Most requests one group transaction takes (bounds commit latency and memory).
MAX_GROUP: Final = 4096
#: read_seq over more topics than this walks seq order instead of merging per topic.
MERGE_TOPICS: Final = 32
_BUSY_MS = 5000
#: How long a read may run on the event loop's thread before the pool takes it (Rule 7).
INLINE_MS = 5.0
_SYNCHRONOUS: Final = ("OFF", "NORMAL", "FULL", "EXTRA")

_SCHEMA: Final = (
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
_INSERT_MESSAGE: Final = "INSERT INTO messages VALUES (?, ?, ?, ?, ?, ?, ?)"
_INSERT_KEY: Final = "INSERT OR REPLACE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
_FIND_KEY: Final = ("SELECT created, seq, offset, time, id, data, content_type FROM keys"
                    " WHERE topic_id = ? AND key = ?")
_UPSERT_TOPIC: Final = (
    "INSERT INTO topics VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET"
    " last_offset = excluded.last_offset, last_seq = excluded.last_seq,"
    " trim_offset = excluded.trim_offset, trim_seq = excluded.trim_seq")
_DELETE: Final = ("DELETE FROM messages WHERE topic_id = ? AND offset > ? AND offset <= ?"
                  " RETURNING seq")
_INFO: Final = ("SELECT name, epoch, trim_offset + 1, last_offset, last_seq, start_seq,"
                " trim_offset, trim_seq, created FROM topics")
_SELECT: Final = "SELECT topic_id, offset, seq, time, id, data, content_type FROM messages"

_T = TypeVar("_T")
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
_Job = tuple[Callable[..., tuple[Any, list[Message]]], tuple[Any, ...], "asyncio.Future[Any]", int]


@dataclass(slots=True, eq=False)
class _Topic:
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


class SQLiteEngine:
    """An :class:`~hubbub.engines.base.Engine` in one SQLite file (see the module docstring).

    Args:
        path: the database file; missing parent directories are created.
        key_ttl_ms: how long an idempotency key dedups.
        synchronous: SQLite's ``synchronous`` pragma: ``NORMAL`` survives
            ``kill -9``, ``FULL`` also survives power loss.
    """

    durable = True

    def __init__(
        self, path: str, *, key_ttl_ms: int = DEFAULT_KEY_TTL_MS, synchronous: str = "NORMAL"
    ) -> None:
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(_SYNCHRONOUS)}")
        self.path, self.store_epoch = path, ""
        self.commits = 0  #: group transactions committed (for tests and metrics)
        self._key_ttl_ms, self._synchronous = key_ttl_ms, synchronous.upper()
        self._listeners: list[Listener] = []
        self._opening = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._inline: sqlite3.Connection | None = None  # the loop thread's (Rule 7)
        self._deadline = 0.0  # when the read in place gives up (perf_counter)
        self._ids: dict[str, tuple[int, str]] = {}  # readers' cache: name -> (id, epoch)
        self._names: dict[int, tuple[str, str]] = {}  # readers' cache: id -> (name, epoch)
        self._head_seq = 0  # moved on the loop, together with the listeners (Rule 3)
        # The writer thread's own state (Rule 4) ...
        self._conn: sqlite3.Connection | None = None
        self._topics: dict[str, _Topic] = {}
        self._by_id: dict[int, _Topic] = {}
        self._epochs: set[str] = set()
        self._seq, self._next_id, self._stale = 0, 1, False
        self._random, self._random_pos = "", 0  # message ids: 16 random hex digits each
        # ... and what the jobs of the current group have not written yet (Rule 2).
        self._rows: list[tuple[Any, ...]] = []
        self._key_rows: list[tuple[Any, ...]] = []
        self._keys: dict[tuple[str, str], Message] = {}
        self._trims: dict[str, int] = {}  # topic -> offset to trim through
        self._dirty: dict[str, _Topic] = {}

    # -- lifecycle (event loop) -----------------------------------------

    async def open(self) -> None:
        async with self._opening:
            if self._writer is not None:
                return
            self._loop = asyncio.get_running_loop()
            ready: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._queue, self._stopped = queue.SimpleQueue(), concurrent.futures.Future()
            writer = threading.Thread(
                target=self._run, args=(ready,), name="hubbub-sqlite-writer", daemon=True)
            writer.start()
            try:
                await asyncio.wrap_future(ready)
            except (sqlite3.Error, OSError) as e:
                raise Unavailable("cannot open the store") from e
            self._head_seq = self._seq
            self._local, self._ids, self._names = threading.local(), {}, {}
            self._pool = concurrent.futures.ThreadPoolExecutor(2, "hubbub-sqlite-reader")
            self._writer = writer

    async def close(self) -> None:
        async with self._opening:
            pool = self._pool
            if self._writer is None or pool is None:
                return
            self._writer = self._pool = None  # refuse new work; queued jobs still run
            self._queue.put(None)
            await asyncio.wrap_future(self._stopped)
            await asyncio.to_thread(pool.shutdown)
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._inline = None

    async def ping(self) -> None:
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    def blobs(self, directory: str | None = None) -> BlobStore:
        """Files in ``directory``, or in ``uploads`` beside the database."""
        beside = os.path.dirname(os.path.realpath(self.path))
        return file_blobs(directory, os.path.join(beside, "uploads"))

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add_error_listener(self, listener: ErrorListener) -> None:
        return None  # this engine's feed is in-process: it cannot break

    # -- writing (event loop) -------------------------------------------

    async def append(self, requests: Sequence[AppendRequest], now: int) -> list[AppendResult]:
        if not requests:
            return []
        return await self._submit(self._append_job, (requests, now), len(requests))

    async def trim(self, retention: Callable[[str], Retention], now: int) -> int:
        # Retention is asked here, on the loop: the caller's callable needs no thread safety.
        plan = [(t.name, r) for t in await self.topics()
                if (r := retention(t.name)).max_messages is not None or r.max_age_ms is not None]
        return await self._submit(self._trim_job, (plan, now), 1)

    async def delete_topic(self, name: str) -> bool:
        deleted = await self._submit(self._delete_job, (name,), 1)
        # Readers cache a name's id and epoch as never changing: this one did.
        self._ids.pop(name, None)
        return deleted

    def _delete_job(self, name: str) -> tuple[bool, list[Message]]:
        conn = self._conn
        assert conn is not None
        self._flush()  # this group's earlier appends to it go too
        t = self._topics.pop(name, None)
        if t is None:
            return False, []
        del self._by_id[t.id]
        # Ids are not given out again while this writer runs (_next_id only
        # grows), so readers' id -> name cache entries stay right.
        for table in ("messages", "keys"):
            conn.execute(f"DELETE FROM {table} WHERE topic_id = ?", (t.id,))
        conn.execute("DELETE FROM topics WHERE id = ?", (t.id,))
        return True, []

    async def _submit(self, job: Callable[..., tuple[_T, list[Message]]],
                      args: tuple[Any, ...], size: int) -> _T:
        if self._writer is None or self._loop is None:
            raise Unavailable("store is closed")
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((job, args, fut, size))
        return cast(_T, await fut)

    def _deliver(self, outcomes: list[_Outcome], new: list[Message]) -> None:
        """Advance the head, call the listeners, then answer (Rule 3)."""
        if new:
            self._head_seq = new[-1].seq
            for listener in self._listeners:
                try:
                    listener(new)
                except Exception as e:
                    assert self._loop is not None
                    self._loop.call_exception_handler(
                        {"message": "engine listener failed", "exception": e})
        for fut, value, exc in outcomes:
            if fut.done():
                continue  # the caller was cancelled; the append stands all the same
            if exc is None:
                fut.set_result(value)
            else:
                fut.set_exception(exc)

    # -- the writer thread ----------------------------------------------

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        self._conn = None
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = self._conn = sqlite3.connect(self.path, isolation_level=None)
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"journal mode is {mode}, not wal")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'store_epoch'").fetchone()
            if row is None:
                row = (new_epoch(),)
                conn.execute("INSERT INTO meta VALUES ('store_epoch', ?)", row)
            conn.execute("COMMIT")
            self.store_epoch = row[0]
            self._reset()
        except BaseException as e:
            if self._conn is not None:
                self._conn.close()
            ready.set_exception(e)
            return
        ready.set_result(None)
        try:
            while (group := self._take()) is not None:
                self._commit(group)
        finally:
            conn.close()
            self._stopped.set_result(None)

    def _take(self) -> list[_Job] | None:
        """Wait for a job, then take every pending one; ``None`` once closed and drained."""
        job, group, size = self._queue.get(), [], 0
        while job is not None:
            group.append(job)
            size += job[3]
            if size >= MAX_GROUP:
                break
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
        if job is None:
            if group:  # commit the jobs queued before close(), then stop
                self._queue.put(None)
                return group
            return None
        return group

    def _commit(self, group: list[_Job]) -> None:
        """Run ``group`` in one transaction and schedule the answers (Rules 1 to 3)."""
        conn = self._conn
        assert conn is not None and self._loop is not None
        try:
            if self._stale:  # an earlier failure left the cache unsure
                self._reset()
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcomes, new = self._run_group(group)
            except sqlite3.OperationalError:
                raise
            except Exception:  # some job is at fault: again, one savepoint per job
                conn.execute("ROLLBACK")
                self._reset()
                conn.execute("BEGIN IMMEDIATE")
                outcomes, new = self._run_each(group)
            conn.execute("COMMIT")
            self.commits += 1
        except Exception as e:
            new, outcomes = [], [(fut, None, _unavailable(e)) for _, _, fut, _ in group]
            self._stale = True
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._reset()
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(self._deliver, outcomes, new)

    def _run_group(self, group: list[_Job]) -> tuple[list[_Outcome], list[Message]]:
        outcomes: list[_Outcome] = []
        new: list[Message] = []
        for job, args, fut, _ in group:
            try:
                value, msgs = job(*args)
            except HubbubError as e:  # refused before writing anything (Rule 2)
                outcomes.append((fut, None, e))
                continue
            outcomes.append((fut, value, None))
            new += msgs
        self._flush()
        return outcomes, new

    def _run_each(self, group: list[_Job]) -> tuple[list[_Outcome], list[Message]]:
        conn = self._conn
        assert conn is not None
        outcomes: list[_Outcome] = []
        new: list[Message] = []
        for job, args, fut, _ in group:
            conn.execute("SAVEPOINT job")
            try:
                value, msgs = job(*args)
                self._flush()
                conn.execute("RELEASE job")
            except Exception as e:
                if not conn.in_transaction:
                    raise  # SQLite rolled the whole transaction back: the group fails
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                self._reset()
                outcomes.append((fut, None, _unavailable(e)))
            else:
                outcomes.append((fut, value, None))
                new += msgs
        return outcomes, new

    def _flush(self) -> None:
        """Write the buffered rows, then the buffered trims, then the touched topics."""
        conn = self._conn
        assert conn is not None
        conn.executemany(_INSERT_MESSAGE, self._rows)
        if self._key_rows:
            conn.executemany(_INSERT_KEY, self._key_rows)
        for name, through in self._trims.items():
            self._trim_through(self._topics[name], through)
        conn.executemany(_UPSERT_TOPIC, [t.row() for t in self._dirty.values()])
        self._rows, self._key_rows, self._keys, self._trims, self._dirty = [], [], {}, {}, {}

    def _reset(self) -> None:
        """Drop the buffers; (re)load the topic cache from what the connection sees."""
        assert self._conn is not None
        self._rows, self._key_rows, self._keys, self._trims, self._dirty = [], [], {}, {}, {}
        rows = self._conn.execute("SELECT * FROM topics").fetchall()
        self._topics = {r[1]: _Topic(*r) for r in rows}
        self._by_id = {t.id: t for t in self._topics.values()}
        self._epochs = {r[2] for r in rows} | {self.store_epoch}
        self._seq = max((r[6] for r in rows), default=0)
        self._next_id = max((r[0] for r in rows), default=0) + 1
        self._stale = False

    def _append_job(
        self, requests: Sequence[AppendRequest], now: int
    ) -> tuple[list[AppendResult], list[Message]]:
        """Assign positions and buffer the rows; :meth:`_flush` writes them."""
        conn = self._conn
        assert conn is not None
        topics, keys, ttl = self._topics, self._keys, self._key_ttl_ms
        rows, key_rows, trims, dirty = self._rows, self._key_rows, self._trims, self._dirty
        results: list[AppendResult] = []
        new: list[Message] = []
        seq, ids, pos = self._seq, self._random, self._random_pos
        for req in requests:
            name, key = req.topic, req.key
            t = topics.get(name)
            if key is not None and t is not None:
                hit = keys.get((name, key))  # keyed earlier in this group, not yet written
                if hit is None:
                    r = conn.execute(_FIND_KEY, (t.id, key)).fetchone()
                    if r is not None and now - r[0] < ttl:
                        hit = Message(name, t.epoch, r[2], r[1], r[3], r[4], r[5], r[6])
                if hit is not None:
                    results.append(AppendResult(hit, True))
                    continue
            if t is None:
                t = topics[name] = self._new_topic(name, now, seq)
            seq += 1
            offset = t.last_offset = t.last_offset + 1
            t.last_seq = seq
            if pos >= len(ids):  # one getrandom() per 512 ids, not one per message
                ids, pos = os.urandom(4096).hex(), 0
            mid, pos = ids[pos:pos + 16], pos + 16
            data, ctype = req.data, req.content_type
            msg = Message(name, t.epoch, offset, seq, now, mid, data, ctype)
            rows.append((seq, t.id, offset, now, mid, ctype, data))
            if key is not None:
                keys[name, key] = msg
                key_rows.append((t.id, key, now, seq, offset, now, mid, ctype, data))
            if req.max_messages is not None and offset - req.max_messages > trims.get(name, 0):
                trims[name] = offset - req.max_messages
            dirty[name] = t
            results.append(AppendResult(msg))
            new.append(msg)
        self._seq, self._random, self._random_pos = seq, ids, pos
        return results, new

    def _new_topic(self, name: str, now: int, seq: int) -> _Topic:
        epoch = new_epoch()
        while epoch in self._epochs:
            epoch = new_epoch()
        self._epochs.add(epoch)
        self._next_id += 1
        t = self._by_id[self._next_id - 1] = _Topic(
            self._next_id - 1, name, epoch, now, seq, 0, 0, 0, 0)
        return t

    def _trim_through(self, t: _Topic, offset: int) -> int:
        """Delete ``t``'s messages up to ``offset``; the caller writes the topics row."""
        offset = min(offset, t.last_offset)
        if offset <= t.trim_offset:
            return 0
        assert self._conn is not None
        seqs = self._conn.execute(_DELETE, (t.id, t.trim_offset, offset))
        removed = [s for (s,) in seqs]
        t.trim_offset, t.trim_seq = offset, max(removed)
        return len(removed)

    def _trim_job(self, plan: list[tuple[str, Retention]], now: int) -> tuple[int, list[Message]]:
        conn = self._conn
        assert conn is not None
        self._flush()  # the age query below must see this group's earlier appends
        removed = 0
        for name, r in plan:
            t = self._topics[name]
            through = t.trim_offset
            if r.max_messages is not None:
                through = max(through, t.last_offset - r.max_messages)
            if r.max_age_ms is not None:
                # The oldest message young enough to keep: everything before it goes.
                keep = conn.execute(
                    "SELECT offset FROM messages WHERE topic_id = ? AND offset > ? AND time >= ?"
                    " ORDER BY offset LIMIT 1", (t.id, through, now - r.max_age_ms)).fetchone()
                through = t.last_offset if keep is None else max(through, keep[0] - 1)
            if (n := self._trim_through(t, through)) > 0:
                removed += n
                self._dirty[name] = t
        conn.execute("DELETE FROM keys WHERE created <= ?", (now - self._key_ttl_ms,))
        return removed, []

    # -- reading (reader pool threads) ----------------------------------

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._pool is None or self._loop is None:
            raise Unavailable("store is closed")
        conn = self._inline or self._open_inline()
        if conn is not None:
            self._deadline = time.perf_counter() + INLINE_MS / 1000
            try:
                return fn(conn, *args)  # in place (Rule 7)
            except sqlite3.Error:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
        try:
            return await self._loop.run_in_executor(self._pool, self._in_reader, fn, args)
        except sqlite3.OperationalError as e:
            raise Unavailable("store is unavailable") from e

    def _open_inline(self) -> sqlite3.Connection | None:
        """The connection for reads in place (Rule 7), opened on first use;
        ``None`` if it cannot be (the pool's readers say why)."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA query_only=ON")
        except sqlite3.Error:
            return None
        conn.set_progress_handler(self._over_time, 1000)
        self._readers.append(conn)
        self._inline = conn
        return conn

    def _over_time(self) -> bool:
        return time.perf_counter() > self._deadline

    def _in_reader(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            self._readers.append(conn)
        return fn(conn, *args)

    def _topic_id(self, conn: sqlite3.Connection, name: str) -> tuple[int, str] | None:
        """``(id, epoch)`` of a topic; neither ever changes, so they are cached."""
        hit = self._ids.get(name)
        if hit is None:
            row = conn.execute("SELECT id, epoch FROM topics WHERE name = ?", (name,)).fetchone()
            if row is not None:
                hit = self._ids[name] = (row[0], row[1])
                self._names[row[0]] = (name, row[1])
        return hit

    def _messages(self, conn: sqlite3.Connection, rows: Any) -> list[Message]:
        out, names = [], self._names
        for tid, o, s, t, i, d, c in rows:
            name = names.get(tid)
            if name is None:
                r = conn.execute("SELECT name, epoch FROM topics WHERE id = ?", (tid,)).fetchone()
                name = names[tid] = (r[0], r[1])
            out.append(Message(name[0], name[1], o, s, t, i, d, c))
        return out

    async def read(self, topic: str, after_offset: int, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        return await self._read(self._read_topic, topic, _clamp(after_offset), _clamp(limit))

    def _read_topic(
        self, conn: sqlite3.Connection, topic: str, after: int, limit: int
    ) -> list[Message]:
        hit = self._topic_id(conn, topic)
        if hit is None:
            return []
        rows = conn.execute(f"{_SELECT} WHERE topic_id = ? AND offset > ? ORDER BY offset LIMIT ?",
                            (hit[0], after, limit))
        return self._messages(conn, rows)

    async def read_before(self, topic: str, before_offset: int, limit: int) -> list[Message]:
        if limit <= 0 or before_offset <= 1:
            return []
        return await self._read(self._read_before, topic, _clamp(before_offset), _clamp(limit))

    def _read_before(
        self, conn: sqlite3.Connection, topic: str, before: int, limit: int
    ) -> list[Message]:
        hit = self._topic_id(conn, topic)
        if hit is None:
            return []
        rows = conn.execute(
            f"{_SELECT} WHERE topic_id = ? AND offset < ? ORDER BY offset DESC LIMIT ?",
            (hit[0], before, limit))
        return self._messages(conn, rows)[::-1]

    async def read_seq(
        self, topics: Sequence[str] | None, after_seq: int, limit: int
    ) -> list[Message]:
        if limit <= 0 or (topics is not None and not topics):
            return []
        names = None if topics is None else list(dict.fromkeys(topics))
        return await self._read(self._read_seq, names, _clamp(after_seq), _clamp(limit))

    def _read_seq(
        self, conn: sqlite3.Connection, names: list[str] | None, after: int, limit: int
    ) -> list[Message]:
        if names is None:
            return self._messages(conn, conn.execute(
                f"{_SELECT} WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)))
        ids = [hit[0] for n in names if (hit := self._topic_id(conn, n)) is not None]
        if not ids:
            return []
        conn.execute("BEGIN")  # one snapshot for every statement below (Rule 6)
        try:
            return self._messages(conn, _select_seq(conn, ids, after, limit))
        finally:
            conn.execute("COMMIT")

    async def topic(self, name: str) -> TopicInfo | None:
        row = await self._read(
            lambda conn: conn.execute(f"{_INFO} WHERE name = ?", (name,)).fetchone())
        return None if row is None else TopicInfo(*row)

    async def topics(self) -> list[TopicInfo]:
        rows = await self._read(lambda conn: conn.execute(f"{_INFO} ORDER BY name").fetchall())
        return [TopicInfo(*row) for row in rows]

    async def lookup_epoch(self, epoch: str) -> EpochInfo | None:
        if epoch == self.store_epoch:
            return EpochInfo(None, True)
        row = await self._read(lambda conn: conn.execute(
            "SELECT name FROM topics WHERE epoch = ?", (epoch,)).fetchone())
        # A topic's row holds its current epoch only: a deleted log's epoch is
        # forgotten with its row (unknown, which readers take for a lost log too).
        return None if row is None else EpochInfo(row[0], True)

    async def head_seq(self) -> int:
        return self._head_seq  # on the loop, in step with the listeners (Rule 3)

    # -- consumer groups (Rule 5; the statements are in sqlite_groups) ----

    async def group(self, name: str) -> GroupInfo | None:
        return await self._read(groups.read_group, name)

    async def create_group(
        self, name: str, patterns: Sequence[str], start_seq: int, now: int
    ) -> GroupInfo:
        args = (name, tuple(patterns), _clamp(start_seq), now)
        return await self._submit(self._create_group_job, args, 1)

    async def delete_group(self, name: str) -> bool:
        return await self._submit(self._delete_group_job, (name,), 1)

    async def claim(
        self,
        name: str,
        topics: Sequence[str],
        horizon: int,
        max_messages: int,
        lease_ms: int,
        max_deliver: int,
        now: int,
    ) -> Claim:
        args = (name, list(dict.fromkeys(topics)), _clamp(horizon), max_messages, lease_ms,
                max_deliver, now)
        return await self._submit(self._claim_job, args, max(1, max_messages))

    async def settle(
        self,
        name: str,
        lease_ids: Sequence[str],
        action: Literal["ack", "nack", "extend"],
        now: int,
        *,
        delay_ms: int = 0,
        lease_ms: int = 0,
        error: str | None = None,
    ) -> list[Outcome]:
        # Malformed ids raise here, on the loop: before anything could change.
        leases = [(parse_lease_id(lease_id), lease_id) for lease_id in lease_ids]
        args = (name, leases, action, now, delay_ms, lease_ms, error)
        return await self._submit(self._settle_job, args, max(1, len(leases)))

    def _create_group_job(
        self, name: str, patterns: tuple[str, ...], start_seq: int, now: int
    ) -> tuple[GroupInfo, list[Message]]:
        assert self._conn is not None
        return groups.create_group(self._conn, name, patterns, start_seq, now), []

    def _delete_group_job(self, name: str) -> tuple[bool, list[Message]]:
        assert self._conn is not None
        return groups.delete_group(self._conn, name), []

    def _claim_job(
        self, name: str, topics: list[str], horizon: int, max_messages: int, lease_ms: int,
        max_deliver: int, now: int,
    ) -> tuple[Claim, list[Message]]:
        conn = self._conn
        assert conn is not None
        self._flush()  # the appends and trims queued before this claim come first (Rule 5)
        ids = [t.id for name_ in topics if (t := self._topics.get(name_)) is not None]

        def read_new(after: int, limit: int) -> list[Any]:
            return _select_seq(conn, ids, after, limit) if ids else []

        leases, dead, next_due = groups.claim(
            conn, name, horizon, max_messages, lease_ms, max_deliver, now,
            self._message_of, read_new)
        stored, new = self._append_job(dead, now) if dead else ([], [])
        return Claim(leases, stored, next_due), new

    def _settle_job(
        self, name: str, leases: list[tuple[int, str]], action: Literal["ack", "nack", "extend"],
        now: int, delay_ms: int, lease_ms: int, error: str | None,
    ) -> tuple[list[Outcome], list[Message]]:
        assert self._conn is not None
        return groups.settle(
            self._conn, name, leases, action, now, delay_ms, lease_ms, error), []

    # -- records (writes are writer jobs; the statements are in sqlite_records) ----

    async def get(self, key: str, now: int) -> Record | None:
        record_kind(key)
        return await self._read(records.get, key, now)

    async def put(
        self,
        key: str,
        value: bytes,
        now: int,
        *,
        expires: int | None = None,
        if_version: int | None = None,
    ) -> Record | None:
        record_kind(key)
        args = (key, bytes(value), now, expires, if_version)
        return await self._submit(self._record_job, (records.put, args), 1)

    async def delete(self, key: str, now: int, *, if_version: int | None = None) -> bool:
        record_kind(key)
        return await self._submit(self._record_job, (records.delete, (key, now, if_version)), 1)

    async def scan(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        record_kind(prefix)
        return await self._read(records.scan, prefix, now, limit)

    async def expire(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        record_kind(prefix)
        return await self._submit(self._record_job, (records.expire, (prefix, now, limit)), 1)

    def _record_job(
        self, fn: Callable[..., _T], args: tuple[Any, ...]
    ) -> tuple[_T, list[Message]]:
        assert self._conn is not None
        return fn(self._conn, *args), []

    def _message_of(self, row: Sequence[Any]) -> Message:
        """A message row read by the writer; its topic is in the writer's own cache.

        (Not the readers' cache: the writer also sees topics of a transaction
        that may yet roll back, and then their ids are given out again.)
        """
        t = self._by_id[row[0]]
        return Message(t.name, t.epoch, row[1], row[2], row[3], row[4], row[5], row[6])


def _select_seq(conn: sqlite3.Connection, ids: list[int], after: int, limit: int) -> list[Any]:
    """Message rows of the topics ``ids`` with seq > ``after``, in seq order, at most ``limit``."""
    if len(ids) <= MERGE_TOPICS:
        # Each topic's next ``limit`` by its (topic_id, seq) index, merged.
        one = f"{_SELECT} WHERE topic_id = ? AND seq > ? ORDER BY seq LIMIT ?"
        runs = [conn.execute(one, (i, after, limit)).fetchall() for i in ids]
        return list(heapq.merge(*runs, key=lambda r: r[2]))[:limit]
    # Many topics: walk seq order; ``+`` keeps the planner on the seq key.
    rows: list[Any] = conn.execute(
        f"{_SELECT} WHERE seq > ? AND +topic_id IN (SELECT value FROM json_each(?))"
        " ORDER BY seq LIMIT ?", (after, str(ids), limit)).fetchall()
    return rows


def _clamp(n: int) -> int:
    """SQLite integers have 64 bits; positions and limits beyond mean "all"."""
    return max(-1, min(n, MAX_POSITION))


def _unavailable(e: Exception) -> Exception:
    """What a job's caller gets: store trouble is :class:`Unavailable`, anything else as is."""
    if isinstance(e, sqlite3.OperationalError):
        err = Unavailable("store is unavailable")
        err.__cause__ = e
        return err
    return e
