"""The connections of a cluster, for its operators: list them, disconnect one.

A *connection* is a WebSocket or an SSE stream: what stays open and holds
subscriptions. Polls come and go with every request and are not listed. The
doors register theirs::

    conn = hub.connections.add("ws", principal.subject, "10.0.0.7:51234",
                               topics=lambda: sorted(subscribed), close=end_it)
    ...
    hub.connections.changed(conn)   # its subscriptions or subject changed
    ...
    hub.connections.remove(conn)

Invariants
----------
"a record per chunk": Each node lists its own connections in engine
    records of at most :data:`CHUNK` connections each, ``conns/<node id>/<k>``
    (a connection keeps its chunk ``k`` for its life; a new one takes room in
    the lowest chunk that has some). A chunk is written when one of its
    connections came, went or :meth:`~Connections.changed` (at most every
    :data:`INTERVAL` seconds), every chunk at least every :data:`RENEW`
    seconds, and an emptied chunk is deleted; each record expires after
    :data:`MISSED` renewals, so the connections of a node that died drop
    out of the list. A few writes per node, not one per connection: a busy
    node costs the store little more. And not the whole list at every
    change: with 10,000 connections coming in, writing the one record of
    them all at each change left the SQLite engine's process about 1 KB per
    connection more memory than the memory engine's (freed, but left in
    pieces in the C heap); in chunks, the two engines' processes grow
    alike. Each connection's entry is encoded once, and again only once it
    :meth:`~Connections.changed`: with 100,000 connections, encoding the
    whole list held the event loop for about 0.3 s at every write.
"any node lists them all": :meth:`Connections.list` reads every node's records (this node's own
    connections live), so any node lists the whole cluster, as fresh as
    :data:`INTERVAL` seconds for the others.
"the holder closes it": A connection id is made once per connection (it is also its
    presence ``conn``, :mod:`hubbub.core.presence`). To disconnect one,
    a node closes it at once when it holds it, else publishes the id on
    the topic :data:`ORDERS`; every node sees the messages of that topic
    as they are committed (an engine listener, as the fan-out is: no
    subscription of its own) and closes the connection when it holds it. The door's
    ``close`` callback ends it: a WebSocket with close code 4010 and a
    reason, an SSE stream with a ``close`` event.
"disconnect waits until gone": :meth:`Connections.disconnect` answers whether the connection is
    gone from the list within ``wait`` seconds (its node writes its list
    again at once when one of its connections ends).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..engines.base import AppendRequest
from ..loop.tasks import cancel_and_wait
from ..protocol.errors import HubbubError, InvalidRequest
from ..protocol.message import JSON, Message
from .ports import Administered

log = logging.getLogger("hubbub")

#: The kind of the records listing each node's connections (invariant "a record per chunk").
KIND = "conns/"
#: Connections listed in one record at most (invariant "a record per chunk").
CHUNK = 1000
#: The namespace only the hub itself may write (:meth:`Hub.publish` refuses it).
ADMIN_NAMESPACE = "_admin."
#: The topic operators' orders travel on (invariant "the holder closes it").
ORDERS = ADMIN_NAMESPACE + "orders"
#: Seconds between two looks at whether the list changed.
INTERVAL = 0.5
#: Seconds between two writes of an unchanged list.
RENEW = 10.0
#: Renewals a node may miss before its connections drop out of the list.
MISSED = 3
#: Records read back at most: a thousand nodes of 100,000 connections.
MAX_RECORDS = 100_000
#: A connection id: what :meth:`Connections.add` makes.
ID_LENGTH = 16

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(list[dict[str, Any]]).decode


@dataclass(eq=False, slots=True)
class Conn:
    """One open connection of this node, as its door registered it."""

    id: str
    door: str
    subject: str | None
    remote: str | None
    since: int
    #: The patterns it is subscribed to now (called when the list is written).
    topics: Callable[[], list[str]]
    #: Ends the connection, saying the reason to the client (invariant "the holder closes it").
    close: Callable[[str], None]
    #: Its entry in its node's record, encoded (:meth:`entry`); ``None`` once it changed.
    encoded: bytes | None = field(default=None, repr=False)
    #: The chunk of its node's list it is in (invariant "a record per chunk").
    chunk: int = field(default=0, repr=False)

    def to_dict(self, node: str) -> dict[str, Any]:
        return {"id": self.id, "node": node, "door": self.door, "subject": self.subject,
                "remote": self.remote, "since": self.since, "subscriptions": self.topics()}

    def entry(self, node: str) -> bytes:
        """:meth:`to_dict` in JSON, encoded once until it changes (invariant "a record per chunk")."""
        encoded = self.encoded
        if encoded is None:
            encoded = self.encoded = _encode(self.to_dict(node))
        return encoded


class Connections:
    """This node's connections and the cluster's list of them; ``hub.connections``."""

    def __init__(self, hub: Administered) -> None:
        self.hub = hub
        self._mine: dict[str, Conn] = {}
        #: This node's connections by chunk (invariant "a record per chunk").
        self._chunks: list[dict[str, Conn]] = []
        #: The chunks with room, as a heap: a new connection takes the lowest.
        self._room: list[int] = []
        #: The chunks to write at the next write; the event wakes the writer.
        self._changed: set[int] = set()
        self._dirty = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Orders being carried out (a presence drop is a store write).
        self._obeying: set[asyncio.Task[None]] = set()

    @property
    def node(self) -> str:
        return self.hub.nodes.id

    def add(self, door: str, subject: str | None, remote: str | None, *,
            topics: Callable[[], list[str]], close: Callable[[str], None]) -> Conn:
        """Register a connection that has just opened; its id is new."""
        chunks, room = self._chunks, self._room
        if room:
            k = room[0]
        else:
            k = len(chunks)
            chunks.append({})
            heapq.heappush(room, k)
        conn = Conn(secrets.token_hex(ID_LENGTH // 2), door, subject, remote, self.hub.now(),
                    topics, close, chunk=k)
        self._mine[conn.id] = chunks[k][conn.id] = conn
        if len(chunks[k]) >= CHUNK:
            heapq.heappop(room)  # k was the lowest with room
        self._touch(k)
        return conn

    def remove(self, conn: Conn) -> None:
        """Forget a connection that has ended; idempotent."""
        if self._mine.pop(conn.id, None) is not None:
            chunk = self._chunks[conn.chunk]
            if len(chunk) >= CHUNK:
                heapq.heappush(self._room, conn.chunk)
            del chunk[conn.id]
            self._touch(conn.chunk)

    def changed(self, conn: Conn | None = None) -> None:
        """What is listed of ``conn`` (of every connection: ``None``) changed:
        write its chunk soon (invariant "a record per chunk")."""
        if conn is not None:
            conn.encoded = None
            if self._mine.get(conn.id) is conn:
                self._touch(conn.chunk)
            return
        for each in self._mine.values():
            each.encoded = None
        self._changed.update(range(len(self._chunks)))
        self._dirty.set()

    def _touch(self, k: int) -> None:
        self._changed.add(k)
        self._dirty.set()

    def _key(self, k: int) -> str:
        return f"{KIND}{self.node}/{k}"

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="hubbub-connections")
            self.hub.engine.add_listener(self._committed)

    async def stop(self) -> None:
        """Stop writing and obeying; take this node's list out at once."""
        task, self._task = self._task, None
        for obeying in list(self._obeying):
            await cancel_and_wait(obeying)
        if task is None:
            return
        await cancel_and_wait(task)
        with contextlib.suppress(HubbubError):
            now = self.hub.now()
            await asyncio.gather(*[self.hub.engine.delete(self._key(k), now)
                                   for k in range(len(self._chunks))])

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        written = -RENEW
        while True:
            try:
                # asyncio.timeout, not wait_for: a cancel of this task while the
                # wait times out must come out as a cancel (hub.stop waits for it).
                async with asyncio.timeout(max(0.0, RENEW - (loop.time() - written))):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            self._dirty.clear()
            renew = loop.time() - written >= RENEW
            chunks = range(len(self._chunks)) if renew else sorted(self._changed)
            self._changed = set()
            try:
                await self._write(chunks)
            except Exception as exc:  # the list goes stale, nothing worse
                if isinstance(exc, HubbubError):
                    log.debug("connection list not written: %s", exc)
                else:  # a bug: said, and the writes go on
                    log.exception("connection list not written")
                self._changed.update(chunks)
                self._dirty.set()
            else:
                if renew:
                    written = loop.time()
            await asyncio.sleep(INTERVAL)

    async def _write(self, chunks: Iterable[int]) -> None:
        """Write these chunks of this node's list (invariant "a record per
        chunk"): each as one record, deleted once it is empty."""
        engine, now, node = self.hub.engine, self.hub.now(), self.node
        expires = now + int(RENEW * MISSED * 1000)
        writes: list[Awaitable[object]] = []
        emptied: set[int] = set()
        for k in chunks:
            if k >= len(self._chunks):
                continue  # emptied and forgotten since it was asked for: its record is gone
            conns = self._chunks[k]
            if conns:
                value = b"[" + b",".join([c.entry(node) for c in conns.values()]) + b"]"
                writes.append(engine.put(self._key(k), value, now, expires=expires))
            else:
                writes.append(engine.delete(self._key(k), now))
                emptied.add(k)
        await asyncio.gather(*writes)
        # The last chunks, emptied and deleted (and still empty), are forgotten:
        # renewals write only the chunks there are.
        last = len(self._chunks) - 1
        while last in emptied and not self._chunks[last]:
            self._chunks.pop()
            self._room.remove(last)
            heapq.heapify(self._room)
            last -= 1
        await engine.expire(KIND, now, MAX_RECORDS)

    async def list(self) -> list[dict[str, Any]]:
        """Every connection of the cluster, oldest first (invariant "any node lists them all").

        Raises:
            HubbubError: the store did not answer.
        """
        out = [c.to_dict(self.node) for c in self._mine.values()]
        mine = f"{KIND}{self.node}/"
        for record in await self.hub.engine.scan(KIND, self.hub.now(), MAX_RECORDS):
            if not record.key.startswith(mine):
                with contextlib.suppress(msgspec.DecodeError):
                    out.extend(_decode(record.value))
        out.sort(key=lambda c: (c.get("since", 0), c.get("id", "")))
        return out

    async def find(self, conn_id: str) -> dict[str, Any] | None:
        """The listed connection with this id, on any node."""
        check_id(conn_id)
        return next((c for c in await self.list() if c.get("id") == conn_id), None)

    async def disconnect(self, conn_id: str, reason: str, *, wait: float = 5.0) -> bool:
        """Close the connection ``conn_id`` on whichever node holds it (invariant "the holder closes it");
        whether it is gone from the list within ``wait`` seconds (invariant "disconnect waits until gone").

        Raises:
            InvalidRequest: not a connection id.
        """
        check_id(conn_id)
        if not self.close_mine(conn_id, reason):
            await self.order({"conn": conn_id, "reason": reason})
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while await self.find(conn_id) is not None:
            if loop.time() >= until:
                return False
            await asyncio.sleep(0.05)
        return True

    async def order(self, order: dict[str, str]) -> None:
        """Tell every node (invariant "the holder closes it"): ``{"conn", "reason"}`` closes a connection,
        ``{"drop": KEY}`` drops a presence entry (:meth:`Presence.drop
        <hubbub.core.presence.Presence.drop>`), ``{"reset": TOPIC}`` ends the
        live subscriptions naming a deleted topic (:mod:`hubbub.core.topics_admin`)."""
        # Straight to the engine: Hub.publish refuses the _admin namespace to
        # everyone, so that no client can forge an order.
        await self.hub.engine.append([AppendRequest(ORDERS, _encode(order), JSON, None, 1000)],
                                     self.hub.now())

    def close_mine(self, conn_id: str, reason: str) -> bool:
        """Close ``conn_id`` if this node holds it; whether it did."""
        conn = self._mine.get(conn_id)
        if conn is None:
            return False
        self.remove(conn)
        conn.close(reason)
        return True

    def _committed(self, messages: Sequence[Message]) -> None:
        """The engine listener: carry out the orders among committed messages."""
        for message in messages:
            if message.topic == ORDERS and self._task is not None:
                task = asyncio.ensure_future(self._obey(message))
                self._obeying.add(task)
                task.add_done_callback(self._obeying.discard)

    async def _obey(self, message: Message) -> None:
        with contextlib.suppress(msgspec.DecodeError, KeyError, TypeError, AttributeError,
                                 HubbubError):
            order = message.value()
            if "drop" in order:
                await self.hub.presence.drop_mine(str(order["drop"]))
            elif "reset" in order:
                self.hub.reset_topic(str(order["reset"]))
            else:
                self.close_mine(str(order["conn"]), str(order.get("reason", "disconnected")))


def check_id(conn_id: str) -> None:
    """Raises InvalidRequest unless ``conn_id`` looks like a connection id."""
    if (not isinstance(conn_id, str) or len(conn_id) != ID_LENGTH
            or any(c not in "0123456789abcdef" for c in conn_id)):
        raise InvalidRequest("not a connection id (16 hex digits)", field="id")
