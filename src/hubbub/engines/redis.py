"""RedisEngine: topic logs in Redis streams, fan-out over Redis pub/sub, many nodes.

Theory of operation
-------------------
Every node is stateless: the logs, positions and keys live in one Redis (the
layout is in :mod:`hubbub.engines.redis_scripts`). A node keeps three kinds of
connection to it: a pool for reads (the commands of one loop pass go
together, pipelined: :mod:`hubbub.engines.redis_batch`), one for its writer
task, and one subscribed connection, the *fan-out link*, read by the node's
reader task (:mod:`hubbub.engines.redis_feed`).

The writer task is in :mod:`hubbub.engines.redis_writer`.

Invariants
----------
"one script per group": ``append()`` queues its requests; the node's writer
    task takes every queued call (up to ``MAX_GROUP`` messages) and runs
    them as ONE Lua script: idempotency checks, topic creation, seqs,
    offsets, XADDs, trims, and a PUBLISH of the new messages on
    ``P:fanout``. Redis runs scripts one at a time, so a group is atomic,
    and every node hears the fan-out in seq order, each seq exactly once,
    with no holes.
"only the link feeds listeners": Listeners are fed by the reader only, from
    the fan-out link, in seq order, whichever node appended. The reader
    remembers ``fed``, the newest seq handed to the listeners, skips what it
    has fed already, and treats a hole (a seq beyond ``fed + 1``) as a
    loss: it reads the missing messages from the streams and feeds them
    first. Feeding local appends directly would be faster but wrong: a
    message of node B with a lower seq could arrive after a local one with a
    higher seq, and subscriptions drop what is at or below their position.
"answered after fed": ``append()`` answers after the reader fed its
    messages. The writer parks the group's answers until ``fed`` reaches
    the group's last seq, so a publisher that got its reply can rely on
    local subscribers having been fed, as on the other engines. It costs
    little: Redis writes the fan-out while it runs the script, before its
    reply, so the echo is often there first (measured on loopback: a
    sequential append takes 0.13-0.23 ms, of which the script call is
    0.10-0.17 ms).
"a lost link is said": Losing the fan-out link is never hidden. The reader
    pings the link when it is silent for ``heartbeat`` seconds and gives up
    on it when a ping goes unanswered for as long again. Then the node tells
    its error listeners (the hub fails every live subscription with
    :class:`~hubbub.protocol.errors.Unavailable`: SSE sends ``event:
    error``, WebSockets close with 1013, both with the cursor), answers the
    parked appends (they are stored; with no live subscriber left there is
    nobody to feed first: the one exception to invariant
    "answered after fed"), and ``ping()`` fails so ``/readyz`` says 503. It
    reconnects with
    backoff; once subscribed again it reads every message after ``fed``
    from the streams, feeds it, and goes live.
"a reset store is new": A store that lost its data is a new store. The
    store epoch travels in every fan-out frame; when it changes (Redis
    restarted without persistence, or was flushed), the node adopts it,
    fails the live subscriptions and starts over from the new store's seq.
    Old cursors then name an unknown epoch, which the core reports as a
    gap. A store whose seq went back under the same epoch (Redis restarted
    from a persistence file that missed acknowledged appends) is treated
    alike.
"no blind retries": Commands are never retried blindly: an append whose
    connection broke may or may not be stored, so it fails with
    ``Unavailable`` and the client retries with its idempotency key. A
    publish is never reported stored unless the script returned.

``head_seq()`` is the store's seq, not this node's ``fed``: a client may bring a
cursor from a node that is ahead of this one, and it must not look "ahead of
the log" here. Subscriptions drop the messages at or below their position, so
nothing arrives twice.

Reading. Stream ids are ``OFFSET-SEQ``, so a read by offset is one XRANGE,
and consumer groups can later be Redis consumer groups on the same per-topic
streams. ``read_seq`` is one script: a named topic whose last seq is not after
``after_seq`` costs one HMGET; any other one a binary search over its
retained offsets (seq grows with offset; about log2(retained) one-entry
XRANGEs) and one XRANGE of up to ``limit`` entries, visiting topics by their
first candidate's seq and stopping once no topic left can beat what was
found. ``read_seq(None, ...)`` takes its topics from ``P:topics``, scored by
last seq, so only topics with newer messages are looked at.

Idempotency keys live ``key_ttl_ms`` of Redis's clock (``PX``), and dedup
only while ``now`` (the caller's clock) is within ``key_ttl_ms`` of the
original, as on the other engines.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..protocol.cursor import MAX_POSITION
from ..protocol.errors import Unavailable
from ..protocol.leases import Outcome
from ..protocol.message import Message
from . import redis_groups, redis_records
from . import redis_scripts as lua
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
)
from .blobs import file_blobs
from .redis_batch import Batcher, Command
from .redis_feed import Feed
from .redis_wire import message, topic_info, unavailable
from .redis_writer import Writer, or_none

#: Topics one trim script looks at.
TRIM_TOPICS: Final = 100
#: Connections for reads (``?max_connections=`` in the URL overrides).
POOL_SIZE: Final = 32
#: Reads return at most this many messages whatever the caller asks.
MAX_LIMIT: Final = 1 << 20


class RedisEngine:
    """An :class:`~hubbub.engines.base.Engine` in Redis (see the module docstring).

    Args:
        url: a ``redis://`` (or ``rediss://``) URL, as redis-py takes it.
        prefix: the key prefix; stores with different prefixes share nothing.
        key_ttl_ms: how long an idempotency key dedups.
        heartbeat: seconds of silence on the fan-out link before it is pinged.
        timeout: seconds a command may take before the store counts as down.
    """

    durable = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "hubbub",
        key_ttl_ms: int = DEFAULT_KEY_TTL_MS,
        heartbeat: float = 1.0,
        timeout: float = 5.0,
    ) -> None:
        self.url, self.prefix = url, prefix
        #: This node's name, also the client name of its fan-out link (CLIENT LIST).
        self.node = f"hubbub:{prefix}:{os.urandom(4).hex()}"
        self._timeout = timeout
        self._known: set[str] = set()  # topics that exist: no epoch candidate needed
        self._feed = Feed(prefix, self.node, heartbeat=heartbeat, on_reset=self._known.clear,
                          read=lambda after, limit: self.read_seq(None, after, limit))
        self._groups = redis_groups.RedisGroups(prefix, key_ttl_ms, self._script, self._known,
                                                self._feed.park)
        self._records = redis_records.RedisRecords(prefix, self._script, self._call)
        self._writer = Writer(prefix, key_ttl_ms, self._known, self._feed.park)
        self._redis: aioredis.Redis | None = None
        #: The pool's commands of a loop pass, sent together (redis_batch).
        self._batch: Batcher | None = None
        self._scripts: dict[str, Any] = {}
        self._opening = asyncio.Lock()

    @property
    def groups(self) -> int:
        """Append scripts run (for tests and metrics)."""
        return self._writer.groups

    @property
    def store_epoch(self) -> str:
        """The store's epoch, as the fan-out link last saw it (invariant "a reset store is new")."""
        return self._feed.store_epoch

    @store_epoch.setter
    def store_epoch(self, value: str) -> None:
        self._feed.store_epoch = value

    # -- lifecycle --------------------------------------------------------

    async def open(self) -> None:
        async with self._opening:
            if self._writer.running:
                return
            # No retries below us: a resent append could be stored twice
            # (invariant "no blind retries").
            # RESP2: the fan-out link reads pub/sub messages as plain replies. A
            # bounded pool: ten thousand waiting polls queue for a connection
            # rather than open ten thousand.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.url, max_connections=POOL_SIZE, protocol=2, retry=Retry(NoBackoff(), 0),
                socket_timeout=self._timeout, socket_connect_timeout=self._timeout,
                health_check_interval=0)
            client = self._redis = aioredis.Redis.from_pool(pool)
            self._scripts = {name: client.register_script(getattr(lua, name))
                             for name in ("APPEND", "READ", "READ_BEFORE", "READ_SEQ", "TOPICS",
                                          "DELETE_TOPIC",
                                          "LOOKUP_EPOCH", "TRIM")}
            self._scripts.update((name, client.register_script(script))
                                 for name, script in (*redis_groups.SCRIPTS.items(),
                                                      *redis_records.SCRIPTS.items()))
            try:
                await self._feed.start(client)
            except RedisError as e:
                await client.aclose()
                self._redis = None
                raise unavailable(e) from e
            self._writer.start(client, self._scripts["APPEND"])
            self._batch = Batcher(client)

    async def close(self) -> None:
        async with self._opening:
            client = self._redis
            if not self._writer.running or client is None:
                return
            await self._writer.stop()  # refuses new appends; queued ones still run
            await self._feed.stop(self._timeout)
            self._redis = self._batch = None
            await client.aclose()

    async def ping(self) -> None:
        if not self._feed.up:
            raise Unavailable("the fan-out link to the store is down")
        await self._call(lambda r: r.ping())
        if not self._feed.up:  # it went down meanwhile (invariant "a lost link is said")
            raise Unavailable("the fan-out link to the store is down")

    def blobs(self, directory: str | None = None) -> BlobStore:
        """Files in ``directory``, which every node must share (``docs/cluster.md``),
        or in ``./hubbub-data/uploads``."""
        return file_blobs(directory, os.path.join("hubbub-data", "uploads"))

    def add_listener(self, listener: Listener) -> None:
        self._feed.listeners.append(listener)

    def add_error_listener(self, listener: ErrorListener) -> None:
        """Call ``listener`` whenever live subscribers may have missed messages
        (invariant "a lost link is said")."""
        self._feed.error_listeners.append(listener)

    async def _call(self, fn: Command) -> Any:
        """Run one command (or script) on the pool, shielded from cancellation;
        ``fn`` makes it on the client it is given (the pool's client, or a
        pipeline of this loop pass's commands: :mod:`hubbub.engines.redis_batch`).

        A caller that is cancelled mid-command (a websocket unsub cancels a
        pump inside a claim) gets its CancelledError at once, while the
        command runs to its end in the background and its connection goes
        back to the pool whole. Cancelling inside redis-py instead can leave
        the task waiting for ever (a cancelled ``drain`` under Python 3.11's
        ``wait_for``) or, in redis-py 8.0-8.2, lose the cancel altogether.
        """
        if self._batch is None:
            raise Unavailable("store is closed")
        # Sent with the other commands of this loop pass (redis_batch).
        return await asyncio.shield(self._batch.call(fn))

    async def _script(self, name: str, args: list[Any]) -> Any:
        return await self._call(lambda r: self._scripts[name](args=args, client=r))

    # -- writing (the writer task is in redis_writer) ---------------------

    async def append(self, requests: Sequence[AppendRequest], now: int) -> list[AppendResult]:
        return await self._writer.append(requests, now)

    # -- reading ------------------------------------------------------------

    async def read(self, topic: str, after_offset: int, limit: int) -> list[Message]:
        if limit <= 0:
            return []
        start = max(0, min(after_offset, MAX_POSITION - 1)) + 1
        args = [self.prefix, topic, start, min(limit, MAX_LIMIT)]
        epoch, entries = await self._script("READ", args)
        if not epoch:
            return []
        e = epoch.decode()
        return [message(topic, e, entry) for entry in entries]

    async def read_before(self, topic: str, before_offset: int, limit: int) -> list[Message]:
        if limit <= 0 or before_offset <= 1:
            return []
        # Stream ids are OFFSET-SEQ: an end id of OFFSET alone takes every seq of it.
        last = min(before_offset, MAX_POSITION) - 1
        args = [self.prefix, topic, last, min(limit, MAX_LIMIT)]
        epoch, entries = await self._script("READ_BEFORE", args)
        if not epoch:
            return []
        e = epoch.decode()
        return [message(topic, e, entry) for entry in reversed(entries)]

    async def read_seq(
        self, topics: Sequence[str] | None, after_seq: int, limit: int
    ) -> list[Message]:
        if limit <= 0 or (topics is not None and not topics):
            return []
        names = ["*"] if topics is None else list(dict.fromkeys(topics))
        after, limit = max(0, min(after_seq, MAX_POSITION)), min(limit, MAX_LIMIT)
        pairs, found = await self._script("READ_SEQ", [self.prefix, after, limit, *names])
        heads = [pairs[i].decode() for i in range(0, len(pairs), 2)]
        epochs = [pairs[i].decode() for i in range(1, len(pairs), 2)]
        return [message(heads[found[i] - 1], epochs[found[i] - 1], found[i + 1])
                for i in range(0, len(found), 2)]

    async def topic(self, name: str) -> TopicInfo | None:
        fields = await self._call(lambda r: r.hmget(f"{self.prefix}:t:{name}", lua.INFO_FIELDS))
        return topic_info(name, fields)

    async def topics(self) -> list[TopicInfo]:
        flat = await self._script("TOPICS", [self.prefix])
        infos = [topic_info(flat[i].decode(), flat[i + 1]) for i in range(0, len(flat), 2)]
        return sorted((i for i in infos if i is not None), key=lambda i: i.name)

    async def lookup_epoch(self, epoch: str) -> EpochInfo | None:
        if epoch == self.store_epoch:
            return EpochInfo(None, True)
        found = await self._script("LOOKUP_EPOCH", [self.prefix, epoch])
        if not found:
            return None
        # A deleted topic has no current epoch: Lua's false ends the list early.
        return EpochInfo(found[0].decode(), len(found) > 1 and found[1] == epoch.encode())

    async def delete_topic(self, name: str) -> bool:
        return bool(await self._script("DELETE_TOPIC", [self.prefix, name]))

    async def head_seq(self) -> int:
        return int(await self._call(lambda r: r.get(f"{self.prefix}:seq")) or 0)

    async def trim(self, retention: Callable[[str], Retention], now: int) -> int:
        plan: list[Any] = []
        for t in await self.topics():
            r = retention(t.name)
            if r.max_messages is not None or r.max_age_ms is not None:
                plan += [t.name, or_none(r.max_messages), or_none(r.max_age_ms)]
        removed = 0
        # Some topics per script: Redis serves nobody else while a script runs.
        for i in range(0, len(plan), 3 * TRIM_TOPICS):
            args = [self.prefix, now, *plan[i:i + 3 * TRIM_TOPICS]]
            removed += int(await self._script("TRIM", args))
        return removed

    # -- consumer groups (one script per operation: see redis_groups) -------------

    async def group(self, name: str) -> GroupInfo | None:
        return await self._groups.group(name)

    async def create_group(
        self, name: str, patterns: Sequence[str], start_seq: int, now: int
    ) -> GroupInfo:
        return await self._groups.create_group(name, patterns, start_seq, now)

    async def delete_group(self, name: str) -> bool:
        async def delete(keys: list[str]) -> int:
            return int(await self._call(lambda r: r.delete(*keys)))

        return await self._groups.delete_group(name, delete)

    async def claim(self, name: str, topics: Sequence[str], horizon: int, max_messages: int,
                    lease_ms: int, max_deliver: int, now: int) -> Claim:
        return await self._groups.claim(name, topics, horizon, max_messages, lease_ms,
                                        max_deliver, now)

    async def settle(
        self, name: str, lease_ids: Sequence[str], action: Literal["ack", "nack", "extend"],
        now: int, *, delay_ms: int = 0, lease_ms: int = 0, error: str | None = None,
    ) -> list[Outcome]:
        return await self._groups.settle(name, lease_ids, action, now, delay_ms=delay_ms,
                                         lease_ms=lease_ms, error=error)


    # -- records (one script per write: see redis_records) -------------------------

    async def get(self, key: str, now: int) -> Record | None:
        return await self._records.get(key, now)

    async def put(self, key: str, value: bytes, now: int, *, expires: int | None = None,
                  if_version: int | None = None) -> Record | None:
        return await self._records.put(key, value, now, expires=expires, if_version=if_version)

    async def delete(self, key: str, now: int, *, if_version: int | None = None) -> bool:
        return await self._records.delete(key, now, if_version=if_version)

    async def scan(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        return await self._records.scan(prefix, now, limit)

    async def expire(self, prefix: str, now: int, limit: int = 1000) -> list[Record]:
        return await self._records.expire(prefix, now, limit)


