"""The writer of the SQLite store: one thread, one connection, group commit.

:class:`Writer` owns the only writing connection and the thread that uses it,
and keeps the invariants "one writer thread", "a job fails alone",
"answers follow the commit", "positions never reused" and
"group changes are writes" of :mod:`hubbub.engines.sqlite` (stated there). Every write of
:class:`~hubbub.engines.sqlite.SQLiteEngine` is a job of it: appends, trims,
topic deletes, the consumer-group writes of :mod:`hubbub.engines.sqlite_groups`
and the record writes of :mod:`hubbub.engines.sqlite_records`. The thread's
state (the topic cache, the buffered rows of the current group) is touched by
that thread only; :attr:`Writer.head_seq` and the listeners are moved on the
event loop, in one callback per commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, cast

from ..protocol.cursor import new_epoch
from ..protocol.errors import HubbubError, Unavailable
from ..protocol.message import Message
from . import sqlite_groups as groups
from .base import AppendRequest, AppendResult, Claim, Listener, Retention
from .sqlite_reads import select_seq
from .sqlite_schema import (
    DELETE,
    FIND_KEY,
    INSERT_KEY,
    INSERT_MESSAGE,
    SCHEMA,
    UPSERT_TOPIC,
    Topic,
)

#: Most requests one group transaction takes (bounds commit latency and memory).
MAX_GROUP: Final = 4096
#: How long a connection waits for another's lock before the store counts as busy.
BUSY_MS: Final = 5000
SYNCHRONOUS: Final = ("OFF", "NORMAL", "FULL", "EXTRA")

_T = TypeVar("_T")
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
_Job = tuple[Callable[..., tuple[Any, list[Message]]], tuple[Any, ...], "asyncio.Future[Any]", int]


class Writer:
    """The writer thread of one SQLite file and what it owns (see the module docstring).

    Args:
        path: the database file; missing parent directories are created.
        key_ttl_ms: how long an idempotency key dedups.
        synchronous: SQLite's ``synchronous`` pragma, one of :data:`SYNCHRONOUS`.
    """

    def __init__(self, path: str, key_ttl_ms: int, synchronous: str) -> None:
        self.path, self.store_epoch = path, ""
        self.commits = 0  #: group transactions committed (for tests and metrics)
        self.listeners: list[Listener] = []
        self.head_seq = 0  # moved on the loop, together with the listeners
        self._key_ttl_ms, self._synchronous = key_ttl_ms, synchronous
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        # The writer thread's own state (:mod:`hubbub.engines.sqlite`, invariant
        # "positions never reused") ...
        self._conn: sqlite3.Connection | None = None
        self._topics: dict[str, Topic] = {}
        self._by_id: dict[int, Topic] = {}
        self._epochs: set[str] = set()
        self._seq, self._next_id, self._stale = 0, 1, False
        self._random, self._random_pos = "", 0  # message ids: 16 random hex digits each
        # ... and what the jobs of the current group have not written yet
        # (:mod:`hubbub.engines.sqlite`, invariant "a job fails alone").
        self._rows: list[tuple[Any, ...]] = []
        self._key_rows: list[tuple[Any, ...]] = []
        self._keys: dict[tuple[str, str], Message] = {}
        self._trims: dict[str, int] = {}  # topic -> offset to trim through
        self._dirty: dict[str, Topic] = {}

    @property
    def running(self) -> bool:
        """Whether the thread takes jobs (between :meth:`start` and :meth:`stop`)."""
        return self._thread is not None

    # -- lifecycle (event loop) -----------------------------------------

    async def start(self) -> None:
        """Open the file (creating the tables) and start the thread.

        Raises:
            Unavailable: the file cannot be opened in WAL mode.
        """
        self._loop = asyncio.get_running_loop()
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._queue, self._stopped = queue.SimpleQueue(), concurrent.futures.Future()
        thread = threading.Thread(
            target=self._run, args=(ready,), name="hubbub-sqlite-writer", daemon=True)
        thread.start()
        try:
            await asyncio.wrap_future(ready)
        except (sqlite3.Error, OSError) as e:
            raise Unavailable("cannot open the store") from e
        self.head_seq = self._seq
        self._thread = thread

    async def stop(self) -> None:
        """Refuse new jobs, run the queued ones, then end the thread."""
        self._thread = None
        self._queue.put(None)
        await asyncio.wrap_future(self._stopped)

    async def submit(self, job: Callable[..., tuple[_T, list[Message]]],
                     args: tuple[Any, ...], size: int) -> _T:
        """Run ``job(*args)`` in a group commit; its value once committed.

        ``size`` is what the job counts for against :data:`MAX_GROUP`.

        Raises:
            Unavailable: the writer is stopped, or the store failed the commit.
        """
        if self._thread is None or self._loop is None:
            raise Unavailable("store is closed")
        fut: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((job, args, fut, size))
        return cast(_T, await fut)

    def _deliver(self, outcomes: list[_Outcome], new: list[Message]) -> None:
        """Advance the head, call the listeners, then answer (:mod:`hubbub.engines.sqlite`,
        invariant "answers follow the commit")."""
        if new:
            self.head_seq = new[-1].seq
            for listener in self.listeners:
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

    def delete_job(self, name: str) -> tuple[bool, list[Message]]:
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
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            conn.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
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
        """Run ``group`` in one transaction and schedule the answers."""
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
            except HubbubError as e:  # refused before writing anything: it fails alone
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
        conn.executemany(INSERT_MESSAGE, self._rows)
        if self._key_rows:
            conn.executemany(INSERT_KEY, self._key_rows)
        for name, through in self._trims.items():
            self._trim_through(self._topics[name], through)
        conn.executemany(UPSERT_TOPIC, [t.row() for t in self._dirty.values()])
        self._rows, self._key_rows, self._keys, self._trims, self._dirty = [], [], {}, {}, {}

    def _reset(self) -> None:
        """Drop the buffers; (re)load the topic cache from what the connection sees."""
        assert self._conn is not None
        self._rows, self._key_rows, self._keys, self._trims, self._dirty = [], [], {}, {}, {}
        rows = self._conn.execute("SELECT * FROM topics").fetchall()
        self._topics = {r[1]: Topic(*r) for r in rows}
        self._by_id = {t.id: t for t in self._topics.values()}
        self._epochs = {r[2] for r in rows} | {self.store_epoch}
        self._seq = max((r[6] for r in rows), default=0)
        self._next_id = max((r[0] for r in rows), default=0) + 1
        self._stale = False

    def append_job(
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
                    r = conn.execute(FIND_KEY, (t.id, key)).fetchone()
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

    def _new_topic(self, name: str, now: int, seq: int) -> Topic:
        epoch = new_epoch()
        while epoch in self._epochs:
            epoch = new_epoch()
        self._epochs.add(epoch)
        self._next_id += 1
        t = self._by_id[self._next_id - 1] = Topic(
            self._next_id - 1, name, epoch, now, seq, 0, 0, 0, 0)
        return t

    def _trim_through(self, t: Topic, offset: int) -> int:
        """Delete ``t``'s messages up to ``offset``; the caller writes the topics row."""
        offset = min(offset, t.last_offset)
        if offset <= t.trim_offset:
            return 0
        assert self._conn is not None
        seqs = self._conn.execute(DELETE, (t.id, t.trim_offset, offset))
        removed = [s for (s,) in seqs]
        t.trim_offset, t.trim_seq = offset, max(removed)
        return len(removed)

    def trim_job(self, plan: list[tuple[str, Retention]], now: int) -> tuple[int, list[Message]]:
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

    # -- consumer groups and records ------------------------------------

    def claim_job(
        self, name: str, topics: list[str], horizon: int, max_messages: int, lease_ms: int,
        max_deliver: int, now: int,
    ) -> tuple[Claim, list[Message]]:
        conn = self._conn
        assert conn is not None
        self._flush()  # the appends and trims queued before this claim come first
        ids = [t.id for name_ in topics if (t := self._topics.get(name_)) is not None]

        def read_new(after: int, limit: int) -> list[Any]:
            return select_seq(conn, ids, after, limit) if ids else []

        leases, dead, next_due = groups.claim(
            conn, name, horizon, max_messages, lease_ms, max_deliver, now,
            self._message_of, read_new)
        stored, new = self.append_job(dead, now) if dead else ([], [])
        return Claim(leases, stored, next_due), new

    def statement_job(
        self, fn: Callable[..., _T], args: tuple[Any, ...]
    ) -> tuple[_T, list[Message]]:
        """``fn(connection, *args)``: a write of :mod:`hubbub.engines.sqlite_groups` or
        :mod:`hubbub.engines.sqlite_records` that appends nothing."""
        assert self._conn is not None
        return fn(self._conn, *args), []

    def _message_of(self, row: Sequence[Any]) -> Message:
        """A message row read by the writer; its topic is in the writer's own cache.

        (Not the readers' cache: the writer also sees topics of a transaction
        that may yet roll back, and then their ids are given out again.)
        """
        t = self._by_id[row[0]]
        return Message(t.name, t.epoch, row[1], row[2], row[3], row[4], row[5], row[6])


def _unavailable(e: Exception) -> Exception:
    """What a job's caller gets: store trouble is :class:`Unavailable`, anything else as is."""
    if isinstance(e, sqlite3.OperationalError):
        err = Unavailable("store is unavailable")
        err.__cause__ = e
        return err
    return e
