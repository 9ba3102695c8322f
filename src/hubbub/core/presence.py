"""Presence: who is subscribed to a topic, and their joins and leaves as a topic.

Presence is opt-in per namespace (``presence = true``, see :mod:`hubbub.config`).
A WebSocket or SSE subscription that names a topic of such a namespace *by
its exact name* (patterns do not count) makes its connection present on the
topic: it gets an *entry*, and the hub publishes a ``join`` event; when the
subscription ends, a ``leave``. The events are ordinary messages on the topic
``presence.<topic>``, so they are read like any other topic, on every door
(poll, long poll, SSE, WebSocket, a consumer group), from a cursor, and a
subscriber that reconnects resumes them exactly. ``GET
/v1/topics/{topic}/presence`` lists the entries themselves. Long polls, short
polls and group subscriptions are not present anywhere: they come and go with
every request, or they are workers.

Theory of operation
-------------------
An entry is an engine record ``presence/<topic>/<conn>`` holding
``{topic, conn, client, info, since}``, with an expiry. ``conn`` is made by
the hub, one per connection; ``client`` and ``info`` are what the client said
about itself (optional). Records are shared by the nodes of a cluster, so
every node lists the same entries.

Invariants
----------
"the holder renews its entries": The node that holds a connection renews its entries every third of
    ``[server] presence_ttl``, pushing their expiry ``presence_ttl`` ahead.
    A connection that ends, for any reason the node sees (unsub, close,
    the client killed: its socket closes), removes its entries at once.
"one sweeper per expiry": Every node sweeps expired entries as often as it renews. An entry
    expires only when its node stopped renewing it: the node died, or
    stalled for two renewals. ``expire()`` hands each expired record to
    exactly one caller (the engine's promise), so exactly one node
    publishes its ``leave``, with reason ``expired``.
"one join, one leave": Each entry has one ``join`` and at most one ``leave``: the join is
    published by the node that wrote the entry; the leave by whoever
    removed it, that is, the node whose ``delete()`` returned true, or
    the one sweep that expired it. A leave can be lost only if its node
    dies between removing the record and publishing the event.
"a lost entry comes back": A node that finds one of its own entries gone when it renews it (it
    stalled past the expiry) writes it again. If its own sweep of that one
    record finds it, nobody has said ``leave`` and nothing is said; else
    another node said ``leave``, and the node says ``join`` again. So the
    events of an entry always alternate: join, leave, join, ...
"one entry per connection": A connection present twice on a topic (two subscriptions naming it)
    has one entry, removed with the last of them.

Events are JSON::

    {"event": "join",  "topic": "chat.room1", "conn": "5f0c...", "client": "alice",
     "info": {"name": "Alice"}, "since": 1700000000000}
    {"event": "leave", "topic": "chat.room1", "conn": "5f0c...", "client": "alice",
     "info": {"name": "Alice"}, "since": 1700000000000, "reason": "unsub"}

``reason`` is ``unsub`` (the client ended the subscription), ``closed`` (the
connection ended without that: the client went away, was killed, or the hub
shut down) or ``expired`` (invariant "one sweeper per expiry").

Trade-off: renewing costs one engine write per entry per renewal; with the
default 30 s, 10,000 present connections on a node cost ~1,000 writes a
second. Raise ``presence_ttl`` for many connections, lower it for quicker
expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ..config import PRESENCE
from ..engines.base import AppendRequest, Record
from ..loop.tasks import cancel_and_wait
from ..protocol.errors import HubbubError, InvalidRequest, InvalidTopic, NotFound, Unavailable
from ..protocol.message import JSON
from ..protocol.topics import MAX_TOPIC_LENGTH, validate_topic
from .ports import WithOrders

log = logging.getLogger("hubbub")

#: The kind of presence records.
KIND = "presence/"
#: The longest topic with presence: ``presence.<topic>`` must be a topic too.
MAX_PRESENT_TOPIC = MAX_TOPIC_LENGTH - len(PRESENCE) - 1
MAX_CLIENT_LENGTH = 64
MAX_INFO_BYTES = 1024
#: Entries a presence list shows at most.
MAX_LIST = 1000
_SWEEP_BATCH = 1000

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def events_topic(topic: str) -> str:
    """The topic of ``topic``'s join and leave events."""
    return f"{PRESENCE}.{topic}"


def check_client(client: Any, info: Any) -> tuple[str | None, Any]:
    """Validate what a client says about itself: ``client`` (an id of 1-64
    characters, no control characters) and ``info`` (any JSON value of at
    most 1024 bytes).

    Raises:
        InvalidRequest: either is malformed (``field`` names it).
    """
    if client is not None and (
            not isinstance(client, str) or not 0 < len(client) <= MAX_CLIENT_LENGTH
            or any(unicodedata.category(c).startswith("C") for c in client)):
        raise InvalidRequest(
            f"client must be 1-{MAX_CLIENT_LENGTH} characters, no control characters",
            field="client")
    if info is not None:
        try:
            size = len(_encode(info))
        except (TypeError, msgspec.EncodeError):
            raise InvalidRequest("info cannot be encoded as JSON", field="info") from None
        if size > MAX_INFO_BYTES:
            raise InvalidRequest(f"info is larger than {MAX_INFO_BYTES} bytes as JSON",
                                 field="info")
    return client, info


@dataclass(eq=False, slots=True)
class _Entry:
    """An entry this node holds: its record's key and version, and how many
    subscriptions of its connection keep it (invariant "one entry per connection")."""

    key: str
    doc: dict[str, Any]
    version: int
    count: int = 1
    gone: bool = False
    #: Renewal and removal of one entry never interleave.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(eq=False, slots=True)
class Member:
    """One connection's presence: its id and the entries it holds.

    Made by :meth:`Presence.member`; the door calls :meth:`join` when a
    subscription starts, :meth:`leave` when it ends, :meth:`close` when the
    connection does.
    """

    presence: Presence
    conn: str
    entries: dict[str, _Entry] = field(default_factory=dict)

    async def join(self, topics: Sequence[str], client: str | None, info: Any) -> None:
        """Be present on ``topics`` (from :meth:`Presence.topics`): all of them or, on
        an error, none (what was joined is left again).

        Raises:
            Unavailable: the store failed or the hub is shutting down.
        """
        done: list[str] = []
        try:
            for topic in topics:
                entry = self.entries.get(topic)
                if entry is not None:
                    entry.count += 1
                else:
                    self.entries[topic] = await self.presence._add(topic, self.conn, client, info)
                done.append(topic)
        except BaseException:
            await self.leave(done, "closed")
            raise

    async def leave(self, topics: Iterable[str], reason: str) -> None:
        """End one subscription's presence on ``topics`` (joined before). Never
        raises: an entry the store failed to remove is no longer renewed, so
        it expires and is swept with its ``leave`` (invariant "one sweeper per expiry")."""
        for topic in topics:
            entry = self.entries.get(topic)
            if entry is None:
                continue
            entry.count -= 1
            if entry.count <= 0:
                del self.entries[topic]
                with contextlib.suppress(HubbubError):
                    await self.presence._remove(entry, reason)

    async def close(self, reason: str = "closed") -> None:
        """Remove every entry of the connection (it ended). Never raises (see :meth:`leave`)."""
        entries = list(self.entries.values())
        self.entries.clear()
        for entry in entries:
            with contextlib.suppress(HubbubError):
                await self.presence._remove(entry, reason)


class Presence:
    """Presence over one hub. Reached as ``hub.presence``."""

    def __init__(self, hub: WithOrders) -> None:
        self.hub = hub
        #: Entries of this node's connections, by record key.
        self._held: dict[str, _Entry] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def enabled(self, topic: str) -> bool:
        """Whether ``topic``'s namespace has presence on."""
        return self.hub.config.for_topic(topic).presence

    def topics(self, patterns: Iterable[str]) -> list[str]:
        """The topics among ``patterns`` that this subscription would be present on.

        Raises:
            InvalidTopic: such a topic is too long to have an events topic.
        """
        out: list[str] = []
        for p in patterns:
            if any(t in ("*", ">") for t in p.split(".")) or not self.enabled(p):
                continue
            if len(p) > MAX_PRESENT_TOPIC:
                raise InvalidTopic(
                    f"topics with presence are at most {MAX_PRESENT_TOPIC} characters long",
                    field="topic")
            if p not in out:
                out.append(p)
        return out

    @property
    def ttl_ms(self) -> int:
        return int(self.hub.config.server.presence_ttl * 1000)

    def member(self, conn: str | None = None) -> Member:
        """The presence of a new connection: its id ``conn`` (from
        :meth:`hubbub.core.connections.Connections.add`), or a new one."""
        return Member(self, conn or secrets.token_hex(8))

    async def present(self, topic: str) -> dict[str, Any]:
        """Who is present on ``topic``: ``{topic, count, present: [entry...]}``,
        entries sorted by connection id; ``truncated`` when there were more
        than :data:`MAX_LIST`.

        Raises:
            InvalidTopic: a malformed topic name.
            NotFound: the topic's namespace has presence off.
        """
        validate_topic(topic)
        if not self.enabled(topic):
            raise NotFound("presence is off for this topic's namespace", field="topic")
        records = await self.hub.engine.scan(f"{KIND}{topic}/", self.hub.now(), MAX_LIST + 1)
        entries = [_public(_decode(r.value)) for r in records[:MAX_LIST]]
        out: dict[str, Any] = {"topic": topic, "count": len(entries), "present": entries}
        if len(records) > MAX_LIST:
            out["truncated"] = True
        return out

    async def entries(self) -> dict[str, Any]:
        """Every entry of every topic, for operators: ``{count, present: [entry...]}``
        sorted by topic, then connection; ``truncated`` past :data:`MAX_LIST`."""
        records = await self.hub.engine.scan(KIND, self.hub.now(), MAX_LIST + 1)
        entries = [_decode(r.value) for r in records[:MAX_LIST]]
        out: dict[str, Any] = {"count": len(entries), "present": entries}
        if len(records) > MAX_LIST:
            out["truncated"] = True
        return out

    async def drop(self, topic: str, conn: str) -> None:
        """Remove ``conn``'s entry on ``topic`` (an operator's act), with a ``leave``
        event (reason ``dropped``). The node that holds it stops renewing it
        (told on :data:`hubbub.core.connections.ORDERS`), so it stays gone while
        that connection lasts, unless it subscribes to the topic again.

        Raises:
            InvalidTopic: a malformed topic name.
            NotFound: no such entry.
        """
        validate_topic(topic)
        key = f"{KIND}{topic}/{conn}"
        if await self.drop_mine(key):
            return
        record = await self.hub.engine.get(key, self.hub.now())
        if record is None:
            raise NotFound("no such presence entry", field="conn")
        await self.hub.connections.order({"drop": key})
        if await self.hub.engine.delete(key, self.hub.now()):
            await self._emit("leave", _decode(record.value), "dropped")

    async def drop_mine(self, key: str) -> bool:
        """Drop the entry ``key`` if this node holds it; whether it did."""
        entry = self._held.get(key)
        if entry is None:
            return False
        await self._remove(entry, "dropped")
        return True

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Start renewing and sweeping (invariants "the holder renews its entries" and "one sweeper per expiry"), if any namespace has presence on."""
        config = self.hub.config
        self._stopped = False
        if self._task is None and (config.defaults.presence
                                   or any(n.presence for n in config.namespaces.values())):
            self._task = asyncio.create_task(self._run(), name="hubbub-presence")

    async def stop(self) -> None:
        """Stop, and remove this node's entries with ``leave`` events (reason
        ``closed``). Call before the engine closes."""
        self._stopped = True
        await cancel_and_wait(self._task)
        self._task = None
        for entry in list(self._held.values()):
            with contextlib.suppress(HubbubError):
                await self._remove(entry, "closed")

    async def _run(self) -> None:
        interval = self.hub.config.server.presence_ttl / 3
        while True:
            await asyncio.sleep(interval)
            try:
                await self.tick()
            except HubbubError as exc:  # the store is away; try again next time
                log.warning("presence: %s", exc.message)
            except Exception:
                log.exception("presence renewal failed")

    async def tick(self) -> None:
        """Renew this node's entries (invariants "the holder renews its entries" and "a lost entry comes back"), then sweep expired ones (invariant "one sweeper per expiry")."""
        for entry in list(self._held.values()):
            await self._renew(entry)
        await self.sweep()

    async def sweep(self) -> int:
        """Remove expired entries, publishing a ``leave`` for each; how many."""
        engine, swept = self.hub.engine, 0
        while True:
            gone = await engine.expire(KIND, self.hub.now(), _SWEEP_BATCH)
            for record in gone:
                # An entry of this node stays held: its next renewal writes it
                # again and says join (invariant "a lost entry comes back").
                await self._emit("leave", _decode(record.value), "expired")
            swept += len(gone)
            if len(gone) < _SWEEP_BATCH:
                return swept

    # -- entries ------------------------------------------------------------------

    async def _add(self, topic: str, conn: str, client: str | None, info: Any) -> _Entry:
        if self._stopped:
            raise Unavailable("hub is shutting down")
        now = self.hub.now()
        doc = {"topic": topic, "conn": conn, "client": client, "info": info, "since": now}
        key = f"{KIND}{topic}/{conn}"
        record = await self.hub.engine.put(key, _encode(doc), now, expires=now + self.ttl_ms,
                                           if_version=0)
        if record is None:  # pragma: no cover - connection ids are random and unique
            raise Unavailable("presence entry exists already")
        entry = _Entry(key, doc, record.version)
        self._held[key] = entry
        try:
            await self._emit("join", doc)
        except BaseException:
            await self._remove(entry, None)
            raise
        return entry

    async def _remove(self, entry: _Entry, reason: str | None) -> None:
        """Delete the entry's record; publish ``leave`` if it was this call that
        removed it (invariant "one join, one leave"). ``reason`` ``None``: say nothing (a failed join)."""
        async with entry.lock:
            if entry.gone:
                return
            entry.gone = True
            self._held.pop(entry.key, None)
            if await self.hub.engine.delete(entry.key, self.hub.now()) and reason is not None:
                await self._emit("leave", entry.doc, reason)

    async def _renew(self, entry: _Entry) -> None:
        async with entry.lock:
            if entry.gone:
                return
            engine, now = self.hub.engine, self.hub.now()
            value, expires = _encode(entry.doc), now + self.ttl_ms
            record: Record | None = await engine.put(entry.key, value, now, expires=expires,
                                                     if_version=entry.version)
            if record is None:
                # invariant "a lost entry comes back": it lapsed. Claim it if nobody swept it yet, then write it anew.
                claimed = await engine.expire(entry.key, now, 1)
                record = await engine.put(entry.key, value, now, expires=expires, if_version=0)
                if record is not None and not claimed:
                    await self._emit("join", entry.doc)
            if record is not None:
                entry.version = record.version

    async def _emit(self, kind: str, doc: dict[str, Any], reason: str | None = None) -> None:
        """Publish one event on the entry's events topic.

        Straight to the engine: leaves must go out while the hub drains, when
        :meth:`Hub.publish` refuses new work.
        """
        topic = events_topic(doc["topic"])
        event = {"event": kind, **doc}
        if reason is not None:
            event["reason"] = reason
        retention = self.hub.config.retention(topic)
        request = AppendRequest(topic, _encode(event), JSON, None, retention.max_messages)
        await self.hub.engine.append([request], self.hub.now())


def _public(doc: dict[str, Any]) -> dict[str, Any]:
    """An entry as the presence list shows it (the topic is the list's)."""
    return {k: doc.get(k) for k in ("conn", "client", "info", "since")}
