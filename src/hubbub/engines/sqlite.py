"""SQLiteEngine: the embedded durable store (one file, WAL, group commit).

Theory of operation
-------------------
The writer thread and group commit are in :mod:`hubbub.engines.sqlite_writer`,
the read statements in :mod:`hubbub.engines.sqlite_reads`, the tables in
:mod:`hubbub.engines.sqlite_schema`; this module opens, reads and answers.

Invariants
----------
"one writer thread": A dedicated thread owns the only writing connection.
    ``append()``, ``trim()`` and the group methods (invariant
    "group changes are writes") put a job on its queue and await a future. The thread takes
    *every* pending job (up to ``MAX_GROUP`` requests), runs them all in ONE
    transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``) and only then answers:
    that is group commit. Under load many publishes share one commit; alone,
    a publish waits for nobody.
"a job fails alone": Each job is atomic on its own. Jobs assign positions
    and buffer rows in Python; the group's rows then reach SQLite in one
    ``executemany`` per table. If that fails for a reason other than the
    store itself (a value SQLite cannot bind, a bug), the group is rolled
    back and run again with one ``SAVEPOINT`` per job, so only the job at
    fault fails. (A job that refuses its input, e.g. a claim for an unknown
    group, raises a :class:`~hubbub.protocol.errors.HubbubError` *before* it
    writes anything: it fails alone, with no rollback.) If the store fails
    (``sqlite3.OperationalError``: locked, I/O error, disk full), every job
    of the group fails with :class:`~hubbub.protocol.errors.Unavailable` and
    nothing of it was stored.
"answers follow the commit": After ``COMMIT`` the thread schedules ONE
    callback on the event loop that advances ``head_seq``, calls each
    listener once with all new messages of the commit (of every job in it)
    in seq order, and then resolves the futures. The loop runs callbacks in
    the order they were scheduled, so listeners see seq order across commits
    too, and answers come in commit order.
"positions never reused": The writer keeps each topic's state (epoch, last
    offset and seq, trim point) in memory, loaded at open and reloaded from
    the database whenever a job or a commit fails. The topics row outlives
    every trim, so the store's seq (the largest ``last_seq``) and each
    topic's offsets only grow, across reopens too.
"group changes are writes": ``create_group()``, ``claim()`` and ``settle()``
    are jobs of the writer like appends, in the same group commits
    (:mod:`hubbub.engines.sqlite_groups` has their statements). So a claim
    is atomic and serialized with every append; the dead-letter appends of
    a claim are made by the claim's own job, in the same transaction as the
    removal of their entries, and reach the listeners like any other append
    (invariant "answers follow the commit"). A claim first writes the rows
    its group buffered so far: it sees the appends and trims queued before it.
"readers never block the writer": WAL lets a small pool of read-only
    connections (one per pool thread) read the last commit while the writer
    writes the next one. A read of several statements runs in one read
    transaction, so it sees one snapshot.

Trade-offs
----------
"reads run in place first": A read is first tried on the event loop's
    thread, with a connection of its own that never waits for a lock
    (``busy_timeout`` 0) and is interrupted once it has run
    :data:`INLINE_MS` (a progress handler). Interrupted, busy or failed, the
    read goes to the pool (invariant "readers never block the writer"), from
    the start. Most reads are a few pages in the OS's cache, and done in
    place they cost less than the hand-off: ``sqlite3`` lets go of the GIL
    at every row it steps, and a pool thread has to win it back from the
    loop's thread for each one (benchmarks/PROFILES.md). A read that has to
    wait for the disk costs the loop at most the cap plus the one page read
    it is in when the cap passes.

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
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from ..protocol.cursor import MAX_POSITION
from ..protocol.errors import Unavailable
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
from .sqlite_reads import Reads
from .sqlite_schema import INFO
from .sqlite_writer import BUSY_MS, SYNCHRONOUS, Writer

#: How long a read may run on the event loop's thread before the pool takes it
#: (trade-off "reads run in place first").
INLINE_MS = 5.0

_T = TypeVar("_T")


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
        if synchronous.upper() not in SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        self.path = path
        self._writer = Writer(path, key_ttl_ms, synchronous.upper())
        self._opening = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        # The loop thread's connection (trade-off "reads run in place first").
        self._inline: sqlite3.Connection | None = None
        self._deadline = 0.0  # when the read in place gives up (perf_counter)
        self._reads = Reads()

    @property
    def store_epoch(self) -> str:
        """The store's epoch, made when its file was created."""
        return self._writer.store_epoch

    @store_epoch.setter
    def store_epoch(self, value: str) -> None:
        self._writer.store_epoch = value

    @property
    def commits(self) -> int:
        """Group transactions committed (for tests and metrics)."""
        return self._writer.commits

    # -- lifecycle (event loop) -----------------------------------------

    async def open(self) -> None:
        async with self._opening:
            if self._writer.running:
                return
            self._loop = asyncio.get_running_loop()
            await self._writer.start()
            self._local, self._reads = threading.local(), Reads()
            self._pool = concurrent.futures.ThreadPoolExecutor(2, "hubbub-sqlite-reader")

    async def close(self) -> None:
        async with self._opening:
            pool = self._pool
            if not self._writer.running or pool is None:
                return
            self._pool = None  # refuse new work; queued jobs still run
            await self._writer.stop()
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
        self._writer.listeners.append(listener)

    def add_error_listener(self, listener: ErrorListener) -> None:
        return None  # this engine's feed is in-process: it cannot break

    # -- writing (event loop; the writer thread is in sqlite_writer) -----

    async def append(self, requests: Sequence[AppendRequest], now: int) -> list[AppendResult]:
        if not requests:
            return []
        w = self._writer
        return await w.submit(w.append_job, (requests, now), len(requests))

    async def trim(self, retention: Callable[[str], Retention], now: int) -> int:
        # Retention is asked here, on the loop: the caller's callable needs no thread safety.
        plan = [(t.name, r) for t in await self.topics()
                if (r := retention(t.name)).max_messages is not None or r.max_age_ms is not None]
        return await self._writer.submit(self._writer.trim_job, (plan, now), 1)

    async def _write(self, fn: Callable[..., _T], args: tuple[Any, ...], size: int = 1) -> _T:
        """``fn(connection, *args)`` as a job of the writer (a group or record write)."""
        return await self._writer.submit(self._writer.statement_job, (fn, args), size)

    async def delete_topic(self, name: str) -> bool:
        deleted = await self._writer.submit(self._writer.delete_job, (name,), 1)
        self._reads.forget(name)
        return deleted

    # -- reading (reader pool threads) ----------------------------------

    async def _read(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._pool is None or self._loop is None:
            raise Unavailable("store is closed")
        conn = self._inline or self._open_inline()
        if conn is not None:
            self._deadline = time.perf_counter() + INLINE_MS / 1000
            try:
                return fn(conn, *args)  # in place (trade-off "reads run in place first")
            except sqlite3.Error:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
        try:
            return await self._loop.run_in_executor(self._pool, self._in_reader, fn, args)
        except sqlite3.OperationalError as e:
            raise Unavailable("store is unavailable") from e

    def _open_inline(self) -> sqlite3.Connection | None:
        """The connection for reads in place, opened on first use; ``None`` if it
        cannot be (the pool's readers say why). See trade-off "reads run in place first"."""
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
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            self._readers.append(conn)
        return fn(conn, *args)

    async def read(self, topic: str, after_offset: int, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        return await self._read(self._reads.read_topic, topic, _clamp(after_offset),
                                _clamp(limit))

    async def read_before(self, topic: str, before_offset: int, limit: int) -> list[Message]:
        if limit <= 0 or before_offset <= 1:
            return []
        return await self._read(self._reads.read_before, topic, _clamp(before_offset),
                                _clamp(limit))

    async def read_seq(
        self, topics: Sequence[str] | None, after_seq: int, limit: int
    ) -> list[Message]:
        if limit <= 0 or (topics is not None and not topics):
            return []
        names = None if topics is None else list(dict.fromkeys(topics))
        return await self._read(self._reads.read_seq, names, _clamp(after_seq), _clamp(limit))

    async def topic(self, name: str) -> TopicInfo | None:
        row = await self._read(
            lambda conn: conn.execute(f"{INFO} WHERE name = ?", (name,)).fetchone())
        return None if row is None else TopicInfo(*row)

    async def topics(self) -> list[TopicInfo]:
        rows = await self._read(lambda conn: conn.execute(f"{INFO} ORDER BY name").fetchall())
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
        return self._writer.head_seq  # on the loop, in step with the listeners

    # -- consumer groups (writer jobs; the statements are in sqlite_groups) ----

    async def group(self, name: str) -> GroupInfo | None:
        return await self._read(groups.read_group, name)

    async def create_group(
        self, name: str, patterns: Sequence[str], start_seq: int, now: int
    ) -> GroupInfo:
        args = (name, tuple(patterns), _clamp(start_seq), now)
        return await self._write(groups.create_group, args)

    async def delete_group(self, name: str) -> bool:
        return await self._write(groups.delete_group, (name,))

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
        return await self._writer.submit(self._writer.claim_job, args, max(1, max_messages))

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
        return await self._write(groups.settle, args, max(1, len(leases)))

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
        return await self._write(records.put, args)

    async def delete(self, key: str, now: int, *, if_version: int | None = None) -> bool:
        record_kind(key)
        return await self._write(records.delete, (key, now, if_version))

    async def scan(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        record_kind(prefix)
        return await self._read(records.scan, prefix, now, limit)

    async def expire(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        record_kind(prefix)
        return await self._write(records.expire, (prefix, now, limit))


def _clamp(n: int) -> int:
    """SQLite integers have 64 bits; positions and limits beyond mean "all"."""
    return max(-1, min(n, MAX_POSITION))
