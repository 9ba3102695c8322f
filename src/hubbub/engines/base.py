"""The engine interface: what the hub core needs from storage.

An engine stores topic logs. It knows nothing of HTTP, sockets, patterns or
subscribers; the core drives it. The same contract suite
(``tests/engines/test_contract.py``) runs against every engine.

Positions: each stored message gets the next *offset* of its topic and the
next *seq* of the store (see :mod:`hubbub.protocol.cursor`). Both only grow. Every
topic has an *epoch*, a random id made when its log is created; the store has
an epoch of its own, made when the store is created. Offsets restart at 1 only
together with a new epoch.

Time is passed in (``now``, milliseconds since the Unix epoch) by the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from ..protocol.errors import HubbubError
from ..protocol.leases import Outcome
from ..protocol.message import Message

#: How long an idempotency key dedups a retried append (24 hours).
DEFAULT_KEY_TTL_MS: Final = 24 * 3600 * 1000

#: Called with committed messages, in seq order.
Listener = Callable[[Sequence[Message]], None]
#: Called with the error when live delivery may have missed messages.
ErrorListener = Callable[[HubbubError], None]


@dataclass(frozen=True, slots=True)
class Retention:
    """How much history a topic keeps. ``None`` means no limit."""

    max_messages: int | None = None
    max_age_ms: int | None = None


@dataclass(frozen=True, slots=True)
class AppendRequest:
    """One message to append. ``data`` is compact JSON text when ``content_type`` is JSON."""

    topic: str
    data: bytes
    content_type: str
    key: str | None = None
    max_messages: int | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """The stored message, and whether it was a duplicate of an earlier keyed append."""

    message: Message
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """A topic's log as it stands.

    ``first_offset`` is the first retained offset (``last_offset + 1`` when
    nothing is retained). ``trim_offset``/``trim_seq`` describe the newest
    message removed by retention (0 when none was). ``start_seq`` is the
    store's seq when this epoch of the topic began.
    """

    name: str
    epoch: str
    first_offset: int
    last_offset: int
    last_seq: int
    start_seq: int
    trim_offset: int
    trim_seq: int
    created: int

    @property
    def count(self) -> int:
        return self.last_offset - self.first_offset + 1


@dataclass(frozen=True, slots=True)
class EpochInfo:
    """What an epoch id names: a topic's log (current or former) or the store itself."""

    topic: str | None
    current: bool


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group as stored: its patterns, how far it has taken new
    messages (``delivered_seq``), and how many entries are pending."""

    name: str
    patterns: tuple[str, ...]
    delivered_seq: int
    pending: int
    created: int


@dataclass(frozen=True, slots=True)
class Lease:
    """A message leased to one worker until ``deadline`` (ms), on its ``attempts``-th try."""

    lease_id: str
    message: Message
    attempts: int
    deadline: int


@dataclass(frozen=True, slots=True)
class Claim:
    """What a pull took: leases, messages moved to the dead-letter topic, and
    the earliest deadline still pending (when a waiting pull should look again)."""

    leases: list[Lease]
    dead: list[AppendResult]
    next_due: int | None


@dataclass(frozen=True, slots=True)
class Record:
    """A small keyed value with a version and an optional expiry (ms).

    Records hold state that is not a log: upload offsets, job states,
    presence entries. ``version`` starts at 1 and grows by one per write, so
    writers can compare-and-set. Keys are strings such as ``"job/abc"``; the
    part before the first ``/`` is the record's *kind* (every key and prefix
    must have one: :func:`record_kind`), and scans and expiry work within
    one kind.
    """

    key: str
    value: bytes
    version: int
    expires: int | None


def record_kind(key_or_prefix: str) -> str:
    """The kind a record key or prefix names: the part before its first ``/``.

    Raises:
        ValueError: it has no ``/``, so it names no one kind (engines index
            records per kind; a scan or sweep stays within one).
    """
    kind, slash, _ = key_or_prefix.partition("/")
    if not slash:
        raise ValueError(f"record key or prefix {key_or_prefix!r} names no kind ('kind/...')")
    return kind


class Engine(Protocol):
    """Storage for topic logs. All methods are coroutine-safe."""

    #: The store's epoch; it changes only if the store is lost or recreated.
    store_epoch: str
    #: Whether a successful append survives a crash of the process.
    durable: bool

    async def open(self) -> None:
        """Open or create the store. Must be called before anything else."""

    async def close(self) -> None:
        """Finish in-flight appends, then release every resource."""

    async def ping(self) -> None:
        """Return if the store is reachable.

        Raises:
            Unavailable: it is not.
        """

    async def append(self, requests: Sequence[AppendRequest], now: int) -> list[AppendResult]:
        """Append messages, atomically: all are stored or none is.

        Results come in request order; new messages get increasing seqs in that
        order, and each topic's offsets increase by one per message. On a
        durable engine the call returns only after the commit. A request whose
        ``(topic, key)`` was appended before (within the key expiry) stores
        nothing and returns the earlier message with ``duplicate=True``. After
        the commit, and before this call returns, every listener is called
        with the new messages, in seq order (once per commit: a commit may
        group several calls). A listener's exception goes to the event loop's
        exception handler, never to the caller: the messages are stored. When ``max_messages`` is set, the topic is trimmed to it in the
        same transaction.

        Calls are stored in the order they start: an engine fixes a call's
        place before the call first waits, so of two calls started one after
        the other (tasks made in that order, say) the first gets the lower
        seqs and offsets, though neither waited for the other's commit.
        Concurrent calls may share one commit (group commit): that is how a
        connection's pipelined publishes (:mod:`hubbub.transports.ws.pipeline`)
        cost about one commit for many.

        Raises:
            Unavailable: the store cannot be reached; nothing was stored.
        """

    async def read(self, topic: str, after_offset: int, limit: int) -> list[Message]:
        """Up to ``limit`` retained messages of ``topic`` with offset > ``after_offset``,
        in offset order; ``[]`` for an unknown topic."""

    async def read_seq(
        self, topics: Sequence[str] | None, after_seq: int, limit: int
    ) -> list[Message]:
        """Up to ``limit`` retained messages with seq > ``after_seq``, in seq order,
        from the named topics (``None``: every topic)."""

    async def read_before(self, topic: str, before_offset: int, limit: int) -> list[Message]:
        """The newest ``limit`` retained messages of ``topic`` with offset <
        ``before_offset``, in offset order (oldest first); ``[]`` for an unknown
        topic. Reading from the end of a log, a page at a time."""

    async def topic(self, name: str) -> TopicInfo | None:
        """The topic's log state, or ``None`` if it was never written."""

    async def delete_topic(self, name: str) -> bool:
        """Remove the topic's log: its messages and its state; whether there was one.

        The next append to the topic starts a new log, with a new epoch, at
        offset 1 (seqs go on growing). The old epoch is never current again:
        :meth:`lookup_epoch` says so, or no longer knows it. Atomic.
        """

    async def topics(self) -> list[TopicInfo]:
        """Every topic, sorted by name."""

    async def lookup_epoch(self, epoch: str) -> EpochInfo | None:
        """What ``epoch`` names in this store, or ``None`` if it is not of this store."""

    async def head_seq(self) -> int:
        """The seq of the newest message already handed to the listeners (0: none)."""

    async def trim(self, retention: Callable[[str], Retention], now: int) -> int:
        """Remove messages beyond each topic's retention (count and age).

        Returns the number of messages removed. Trimming only ever removes a
        topic's oldest messages, and records the newest removed one in
        ``TopicInfo.trim_offset``/``trim_seq``.
        """

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener`` with every batch of committed messages, in seq order."""

    def add_error_listener(self, listener: ErrorListener) -> None:
        """Call ``listener`` whenever listeners may have missed messages (a
        broken link to a shared store); live subscribers must then resume from
        the store. Engines whose feed cannot break never call it."""

    # -- consumer groups (rules in hubbub.protocol.leases) ---------------------------------

    async def group(self, name: str) -> GroupInfo | None:
        """The group, or ``None`` if it was never created."""

    async def create_group(
        self, name: str, patterns: Sequence[str], start_seq: int, now: int
    ) -> GroupInfo:
        """Create the group taking new messages after ``start_seq``, unless it
        exists; either way return it as stored (the caller compares patterns)."""

    async def delete_group(self, name: str) -> bool:
        """Forget the group, its position and its pending entries at once (its
        dead-letter topic stays); ``False`` if there was none. Settling its
        outstanding leases then raises ``NotFound``; a later pull creates it anew."""

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
        """Lease up to ``max_messages`` messages to one worker, atomically.

        Due entries come first, oldest seq first (:mod:`hubbub.protocol.leases`,
        invariants "due at the deadline" and "due entries first"); one that
        reached ``max_deliver`` attempts is removed and appended to the
        group's dead-letter topic instead, in the same transaction (listeners
        are called for it). Then new messages of
        ``topics`` with seq in ``(delivered_seq, horizon]``, in seq order, each
        a new entry on its first attempt. Entries whose message was trimmed
        from the log are dropped.

        Raises:
            NotFound: no such group.
        """

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
        """Ack, nack (due again after ``delay_ms``, remembering ``error``) or
        extend (deadline ``now + lease_ms``) leases, atomically
        (:mod:`hubbub.protocol.leases`, invariant
        "only the current lease settles"); one outcome per id, in order.

        Raises:
            NotFound: no such group.
        """

    # -- records (keys with versions and expiry) ------------------------------------

    async def get(self, key: str, now: int) -> Record | None:
        """The record, or ``None`` if there is none or it expired before ``now``."""

    async def put(
        self,
        key: str,
        value: bytes,
        now: int,
        *,
        expires: int | None = None,
        if_version: int | None = None,
    ) -> Record | None:
        """Write a record, atomically, and return it as stored.

        ``if_version`` makes the write conditional: ``0`` means "only if there
        is no live record", ``n > 0`` "only if the live record has version
        ``n``". When the condition fails nothing changes and ``None`` is
        returned. An expired record counts as absent.
        """

    async def delete(self, key: str, now: int, *, if_version: int | None = None) -> bool:
        """Remove a live record (conditionally, as in :meth:`put`); whether one was removed."""

    async def scan(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        """Live records whose key starts with ``prefix``, sorted by key, at most ``limit``."""

    async def expire(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        """Remove records under ``prefix`` that expired before ``now`` and return
        them, atomically: when several nodes sweep, each expired record is
        returned to exactly one of them."""

    # -- blobs (the bytes of uploads) -------------------------------------------------

    def blobs(self, directory: str | None = None) -> BlobStore:
        """A blob store for this engine's uploads, keeping its blobs under
        ``directory`` (``[uploads] dir``) or, when ``None``, where the engine
        keeps them by default. The caller closes it. Makes nothing yet: a
        store's directory is made with its first blob."""


class BlobWriter(Protocol):
    """The one writer of a blob, while :meth:`BlobStore.writer` holds it."""

    async def truncate(self, size: int) -> None:
        """Cut the blob to ``size`` bytes if it is longer; a shorter blob stays as it is."""

    def write(self, data: bytes | bytearray, at: int) -> asyncio.Future[None]:
        """Start writing all of ``data`` at byte ``at``; a future for its end.

        The write is under way when this returns (``data`` must not change
        until the future is done) and goes on even if the future is cancelled
        or the writer's block ends meanwhile: the blob stays locked until the
        last write started is done, so no other writer ever sees one half
        finished. Not durable until :meth:`sync`; a crash before may keep any
        part of it.
        """

    async def sync(self) -> None:
        """Make durable every byte of the writes already done (their futures
        resolved): when this returns, a crash of the process keeps them (a
        power loss too, where the file system honours ``fdatasync``)."""


class BlobStore(Protocol):
    """Blobs: byte strings by name, written in place at offsets, one writer at a time.

    Uploads keep their bytes here (:mod:`hubbub.core.uploads`) and their
    offsets in records: a record says how many bytes of a blob count, so a
    blob may be longer than that after a crash (a stale tail the next writer
    cuts). Names are made by the caller, ``[0-9a-f]{32}``. Locks work across
    processes and nodes that share the store, and die with their holder.
    """

    async def create(self, name: str) -> None:
        """Make the empty blob ``name``, durably: once this returns, it survives
        a crash.

        Raises:
            FileExistsError: there is one already (nothing changed).
        """

    def writer(self, name: str) -> AbstractAsyncContextManager[BlobWriter]:
        """Lock the blob for one writer, for the ``async with`` block, without waiting.

        Raises:
            NotFound: there is no such blob.
            Locked: another writer holds it, in this process or any other.
        """

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """As :meth:`writer`, to change the blob's fate rather than its bytes
        (remove it with :meth:`delete` inside the block): a missing blob is
        no error, and the block then holds nothing.

        Raises:
            Locked: a writer holds it.
        """

    async def delete(self, name: str) -> None:
        """Remove the blob, if there is one. Takes no lock: a writer still
        holding it writes to nothing that can be read again."""

    def path(self, name: str) -> str:
        """The file holding the blob on this host, for readers that take a
        path (downloads, a job's worker). The file exists once :meth:`create`
        returned and until :meth:`delete`; read only what a record says counts."""

    async def close(self) -> None:
        """Release the store. A store of the process only (the memory
        engine's temporary directory) removes its blobs; others keep them."""
