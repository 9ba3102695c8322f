"""Consumer-group subscriptions on a WebSocket: ``sub`` with ``group``, and the
``ack``, ``nack`` and ``extend`` of what they deliver.

:class:`GroupFeeds` holds the group subscriptions of one connection; the checks
and outcomes it shares with the HTTP group routes are in
:mod:`hubbub.transports.groups`, the decisions a client can rely on in its
module docstring.

Invariants
----------
"window bounds unsettled deliveries": A WebSocket group subscription keeps at
    most ``window`` deliveries unsettled. A delivery stays in the window
    until the client acks or nacks it (also after its lease ran out: the ack
    then answers ``expired``), so a client that forgets one shrinks its own
    window, never another worker's share.
"unsettled given back at the end": When the connection ends, its unsettled
    deliveries are nacked at once, so other workers get them without waiting
    for the leases to run out.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from starlette.types import Message as ASGIMessage

from ...core import Hub
from ...core.auth import Principal
from ...core.groups import MAX_DELAY, MAX_ERROR, MAX_IDS, MAX_LEASE
from ...core.values import Lease
from ...loop.tasks import cancel_and_wait
from ...protocol import wire
from ...protocol.errors import HubbubError, InvalidRequest
from ...protocol.leases import Outcome, validate_group
from ..groups import check_duration, check_ids, check_topics, results_or_conflict
from ..problems import close_code

log = logging.getLogger("hubbub")

#: How long a WebSocket group pump holds one pull open (bounded by max_wait).
PUMP_WAIT = 30.0

class Connection(Protocol):
    """What a group subscription needs of its WebSocket connection (``ws.Connection``)."""

    hub: Hub
    codec: wire.Codec
    principal: Principal | None

    async def send_obj(self, obj: Any) -> None: ...

    async def send_many(self, events: list[ASGIMessage]) -> None: ...

    def close(self, code: int, reason: str, *, resume: bool = False) -> None: ...


@dataclass(eq=False)
class Feed:
    """One group subscription of a connection and its unsettled deliveries."""

    id: int
    group: str
    patterns: list[str]
    window: int
    lease: float
    in_flight: set[str] = field(default_factory=set)
    room: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class GroupFeeds:
    """The group subscriptions of one WebSocket connection."""

    __slots__ = ("conn", "feeds", "leases")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.feeds: dict[int, Feed] = {}
        #: Every unsettled delivery of the connection, also of ended feeds.
        self.leases: dict[str, Feed] = {}

    async def subscribe(self, op: wire.Sub, sub_id: int) -> Feed:
        """Join the group (creating it at ``op.start``), answer ``ok``, start delivering."""
        if op.after is not None:
            raise InvalidRequest("after does not apply to a group; use start", field="after")
        assert op.group is not None
        validate_group(op.group)
        principal = self.conn.principal
        assert principal is not None  # the connection authenticated before any sub
        self.conn.hub.auth.check_group(principal, op.group)
        check_topics(op.topics, "topics")
        window = wire.DEFAULT_WINDOW if op.window is None else op.window
        lease = check_duration(wire.DEFAULT_LEASE if op.lease is None else op.lease,
                          "lease", 0.1, MAX_LEASE)
        try:
            # A first pull checks the rest, creates the group and fills the window.
            leases = await self.conn.hub.groups.pull(
                op.group, op.topics, max_messages=window, lease=lease, start=op.start or "end")
        except HubbubError as exc:
            if exc.field == "topic":
                exc.field = "topics"
            raise
        feed = Feed(sub_id, op.group, list(op.topics), window, lease)
        self.feeds[feed.id] = feed
        self._hold(feed, leases)  # from here on close() gives them back
        await self.conn.send_obj({"op": "ok", "id": op.id, "sub": feed.id, "group": feed.group})
        await self._send(feed, leases)
        feed.task = asyncio.create_task(self._pump(feed), name=f"hubbub-ws-group-{feed.id}")
        return feed

    async def stop(self, feed: Feed) -> None:
        """End a feed's deliveries; what it delivered stays settleable on the connection."""
        self.feeds.pop(feed.id, None)
        await cancel_and_wait(feed.task)

    async def settle(self, op: wire.Ack | wire.Nack | wire.Extend) -> dict[str, Any]:
        """Carry out ``ack``, ``nack`` or ``extend``; the ``ok`` reply with every outcome.

        Ids this connection did not deliver (or already settled) are ``unknown``.

        Raises:
            InvalidRequest: malformed ids or values; nothing was settled.
            Conflict: no id was ``ok``; nothing changed.
        """
        ids = check_ids(op.ids)
        action: Literal["ack", "nack", "extend"]
        kw: dict[str, Any]
        if isinstance(op, wire.Ack):
            action, kw = "ack", {}
        elif isinstance(op, wire.Nack):
            check_duration(op.delay, "delay", 0, MAX_DELAY)
            if op.error is not None and len(op.error) > MAX_ERROR:
                raise InvalidRequest(
                    f"error must be text of at most {MAX_ERROR} characters", field="error")
            action, kw = "nack", {"delay": op.delay, "error": op.error}
        else:
            action, kw = "extend", {"lease": check_duration(op.lease, "lease", 0.1, MAX_LEASE)}
        results = dict.fromkeys(ids, Outcome.UNKNOWN)
        by_feed: dict[Feed, list[str]] = {}
        for lease_id in ids:
            if (feed := self.leases.get(lease_id)) is not None:
                by_feed.setdefault(feed, []).append(lease_id)
        for feed, mine in by_feed.items():
            outcomes = await self.conn.hub.groups.settle(feed.group, mine, action, **kw)
            for lease_id, outcome in outcomes.items():
                results[lease_id] = outcome
                if action != "extend" or outcome is not Outcome.OK:
                    self._forget(lease_id)
        return {"op": "ok", "id": op.id, "results": results_or_conflict(results)}

    async def close(self) -> None:
        """The connection is gone: stop every feed, give back what was not settled."""
        for feed in list(self.feeds.values()):
            await self.stop(feed)
        by_group: dict[str, list[str]] = {}
        for lease_id, feed in self.leases.items():
            by_group.setdefault(feed.group, []).append(lease_id)
        self.leases.clear()
        for group, ids in by_group.items():
            for i in range(0, len(ids), MAX_IDS):
                try:
                    async with asyncio.timeout(5):
                        await self.conn.hub.groups.nack(group, ids[i:i + MAX_IDS])
                except (HubbubError, TimeoutError) as exc:
                    # The store is going away too: the leases run out instead.
                    log.debug("could not give back leases of group %s: %s", group, exc)

    # -- delivering ----------------------------------------------------------------

    def _hold(self, feed: Feed, leases: list[Lease]) -> None:
        for x in leases:
            feed.in_flight.add(x.lease_id)
            self.leases[x.lease_id] = feed

    def _forget(self, lease_id: str) -> None:
        feed = self.leases.pop(lease_id, None)
        if feed is not None:
            feed.in_flight.discard(lease_id)
            feed.room.set()

    async def _send(self, feed: Feed, leases: list[Lease]) -> None:
        if self.conn.codec.binary:
            events: list[ASGIMessage] = [
                {"type": "websocket.send", "bytes": wire.delivery_msgpack(
                    x.message, x.lease_id, x.attempts, x.deadline, feed.id)}
                for x in leases]
        else:
            events = [
                {"type": "websocket.send", "text": wire.delivery_json(
                    x.message, x.lease_id, x.attempts, x.deadline, sub=feed.id).decode()}
                for x in leases]
        await self.conn.send_many(events)

    async def _pump(self, feed: Feed) -> None:
        """Pull for the feed whenever its window has room, and send what comes."""
        hub = self.conn.hub
        wait = min(PUMP_WAIT, hub.config.server.max_wait)
        try:
            while True:
                while len(feed.in_flight) >= feed.window:
                    feed.room.clear()
                    await feed.room.wait()
                leases = await hub.groups.pull(
                    feed.group, feed.patterns, max_messages=feed.window - len(feed.in_flight),
                    wait=wait, lease=feed.lease)
                if leases:
                    self._hold(feed, leases)
                    await self._send(feed, leases)
                elif hub.draining:
                    self.conn.close(1012, "service restart", resume=True)
                    return
                elif not wait:
                    await asyncio.sleep(1.0)  # max_wait = 0: poll, do not spin
        except HubbubError as exc:  # the store failed (1013), or the hub is draining
            if hub.draining:
                self.conn.close(1012, "service restart", resume=True)
            else:
                self.conn.close(close_code(exc), exc.code, resume=True)
        except OSError:
            pass  # the client is gone; the reader sees the disconnect
        except Exception:
            log.exception("websocket group pump failed")
            self.conn.close(1011, "internal error")
