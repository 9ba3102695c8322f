"""The consumer-group doors: HTTP pull/ack/nack/extend, and group subscriptions on WebSockets.

The rules of a delivery are in :mod:`hubbub.protocol.leases`, the core API in
:mod:`hubbub.core.groups`; the protocol is in ``docs/groups.md``. This module
parses, calls ``hub.groups``, and encodes.

Decisions a client can rely on:

* A pull answers ``{"messages": [...]}``; each item is the message object of
  every door with ``lease``, ``attempt`` and ``deadline`` (ms) in front. It is
  spliced from the message's cached JSON (:func:`hubbub.protocol.wire.delivery_json`).
* A settle (ack, nack, extend) is judged per lease id (Rule 3 of
  :mod:`hubbub.protocol.leases`): ``ok``, ``expired`` (the lease was replaced: another
  worker may hold the message now) or ``unknown`` (never given, or already
  settled). Input is checked first, so a malformed request changes nothing
  (400). If at least one id is ``ok`` the answer is ``200`` with every id's
  outcome: ids are independent, and the ones not ``ok`` changed nothing. If
  none is ``ok``, nothing changed at all and the answer is ``409`` (``code``
  ``conflict``, the outcomes in ``results``), so that a lone stale or foreign
  ack is an error a client cannot overlook. Repeated ids count once.
* A WebSocket group subscription keeps at most ``window`` deliveries unsettled.
  A delivery stays in the window until the client acks or nacks it (also
  after its lease ran out: the ack then answers ``expired``), so a client
  that forgets one shrinks its own window, never another worker's share.
  When the connection ends, its unsettled deliveries are nacked at once, so
  other workers get them without waiting for the leases to run out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message as ASGIMessage

from ..core import Hub
from ..core.auth import Principal
from ..core.groups import MAX_DELAY, MAX_ERROR, MAX_IDS, MAX_LEASE, MAX_PULL
from ..core.hub import MAX_TOPICS_PER_SUBSCRIPTION
from ..engines.base import GroupInfo, Lease
from ..loop.tasks import cancel_and_wait
from ..protocol import cursor, wire
from ..protocol.depth import check_depth
from ..protocol.errors import Conflict, Forbidden, HubbubError, InvalidRequest
from ..protocol.leases import Outcome, dead_letter_topic, parse_lease_id, validate_group
from ..protocol.message import JSON
from ..protocol.topics import validate_pattern
from .auth import Action, authorize, principal_of
from .httpkit import (
    SECONDS_RE,
    UINT_RE,
    hub_of,
    json_response,
    query_one,
    query_wait,
    read_body,
    while_connected,
)
from .problems import close_code

log = logging.getLogger("hubbub")

#: A settle body holds at most MAX_IDS ids of ~33 bytes and an error text.
MAX_SETTLE_BODY = 128 << 10
#: How long a WebSocket group pump holds one pull open (bounded by max_wait).
PUMP_WAIT = 30.0


class _Ack(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]


class _Nack(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]
    delay: float = 0.0
    error: str | None = None


class _Extend(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]
    lease: float = wire.DEFAULT_LEASE


_BODIES: dict[str, Any] = {
    "ack": msgspec.json.Decoder(_Ack).decode,
    "nack": msgspec.json.Decoder(_Nack).decode,
    "extend": msgspec.json.Decoder(_Extend).decode,
}


# -- shared checks --------------------------------------------------------------------


def _duration(value: float, name: str, low: float, high: float) -> float:
    """Check a duration before anything is settled (the core checks again)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a number of seconds", field=name)
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be from {low:g} to {high:g} seconds", field=name)
    return value


def check_ids(ids: Sequence[str]) -> list[str]:
    """The distinct lease ids, in order; every one must be well formed.

    Raises:
        InvalidRequest: none, too many, or a malformed one (``field`` names it).
    """
    if not 1 <= len(ids) <= MAX_IDS:
        raise InvalidRequest(f"ids must be a list of 1 to {MAX_IDS} lease ids", field="ids")
    for i, lease_id in enumerate(ids):
        parse_lease_id(lease_id, field=f"ids[{i}]")
    return list(dict.fromkeys(ids))


def check_topics(patterns: Sequence[str], field: str) -> None:
    """Validate a group's patterns (named ``topics[i]`` on WebSockets, ``topic`` on HTTP).

    The core subscribes to them whenever a pull waits, so a group with more
    than a subscription may follow would be created but could never wait.
    """
    if len(patterns) > MAX_TOPICS_PER_SUBSCRIPTION:
        raise InvalidRequest(
            f"at most {MAX_TOPICS_PER_SUBSCRIPTION} topics per group", field=field)
    for i, pattern in enumerate(patterns):
        validate_pattern(pattern, field=f"{field}[{i}]" if field == "topics" else field)


def results_or_conflict(results: dict[str, Outcome]) -> dict[str, str]:
    """Outcomes as the wire says them; :class:`Conflict` when none is ``ok``."""
    out = {lease_id: o.value for lease_id, o in results.items()}
    if Outcome.OK not in results.values():
        raise Conflict("no lease was settled: each one is expired or unknown",
                       field="ids", results=out)
    return out


def describe(hub: Hub, g: GroupInfo) -> dict[str, Any]:
    """The group as ``GET /v1/groups/{group}`` shows it.

    ``cursor`` is a watermark cursor (Rule 3 of :mod:`hubbub.protocol.cursor`) at the
    newest message the group has taken: polling the group's topics after it
    shows what the group has not taken yet.
    """
    return {
        "group": g.name, "topics": list(g.patterns), "pending": g.pending,
        "cursor": cursor.encode(hub.store_epoch, 0, g.delivered_seq),
        "max_deliver": hub.config.for_topic(g.patterns[0]).max_deliver,
        "dead_letter_topic": dead_letter_topic(g.name), "created": g.created,
    }


# -- HTTP -----------------------------------------------------------------------------


def _group(request: Request) -> str:
    return validate_group(request.path_params["group"])


async def _authorize(request: Request, name: str, topics: Sequence[str]) -> None:
    """Consuming a group needs its name allowed (Rule 8 of :mod:`hubbub.core.auth`)
    and is reading its topics: the ones named, else the group's own."""
    principal = principal_of(request)
    hub_of(request).auth.check_group(principal, name)
    if principal.admin:
        return  # spare the lookup
    if not topics:
        topics = (await hub_of(request).groups.info(name)).patterns
    authorize(request, Action.SUBSCRIBE, topics)


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    text = query_one(request, name)
    if text is None:
        return default
    if UINT_RE.fullmatch(text) is None or not 1 <= int(text) <= high:
        raise InvalidRequest(f"{name} must be an integer from 1 to {high}", field=name)
    return int(text)


def _lease_param(request: Request) -> float:
    text = query_one(request, "lease")
    if text is None:
        return wire.DEFAULT_LEASE
    if SECONDS_RE.fullmatch(text) is None:
        raise InvalidRequest(f"lease must be from 0.1 to {MAX_LEASE:g} seconds", field="lease")
    return float(text)  # the core checks the range


def _start_param(request: Request) -> Literal["start", "end"]:
    text = query_one(request, "start")
    if text is None or text == "end":
        return "end"
    if text == "start":
        return "start"
    raise InvalidRequest("start must be start or end", field="start")


async def pull(request: Request) -> Response:
    hub = hub_of(request)
    name = _group(request)
    topics = request.query_params.getlist("topic")
    check_topics(topics, "topic")
    await _authorize(request, name, topics)
    call = hub.groups.pull(
        name, topics or None,
        max_messages=_int_param(request, "max", 1, MAX_PULL),
        wait=query_wait(request, hub.config.server.max_wait),
        lease=_lease_param(request),
        start=_start_param(request),
    )
    left, task = await while_connected(request, call)
    if not task.done():
        return Response(status_code=204)  # the client left; nobody reads this answer
    leases = task.result()
    if left and leases:
        # The client left as the pull took its messages: give them back now
        # rather than when their leases run out.
        with contextlib.suppress(HubbubError):
            await hub.groups.nack(name, [x.lease_id for x in leases])
    body = b",".join(wire.delivery_json(x.message, x.lease_id, x.attempts, x.deadline)
                     for x in leases)
    return Response(b'{"messages":[' + body + b"]}", media_type=JSON)


async def _settle_body(request: Request, action: str) -> Any:
    body = await read_body(request, MAX_SETTLE_BODY)
    check_depth(body, hub_of(request).config.limits.json_depth)
    try:
        return _BODIES[action](body)
    except msgspec.ValidationError as exc:
        err = wire.explain(exc)
        err.field = err.field or "body"
        raise err from None
    except msgspec.DecodeError:
        raise InvalidRequest("malformed JSON", field="body") from None


def _settler(
    action: Literal["ack", "nack", "extend"],
) -> Callable[[Request], Awaitable[Response]]:
    async def settle(request: Request) -> Response:
        hub = hub_of(request)
        name = _group(request)
        body = await _settle_body(request, action)
        ids = check_ids(body.ids)
        await _authorize(request, name, [])
        kw: dict[str, Any] = {}
        if isinstance(body, _Nack):
            kw = {"delay": body.delay, "error": body.error}
        elif isinstance(body, _Extend):
            kw = {"lease": body.lease}
        results = await hub.groups.settle(name, ids, action, **kw)
        return json_response({"results": results_or_conflict(results)})

    settle.__name__ = action
    return settle


async def info(request: Request) -> Response:
    hub = hub_of(request)
    name = _group(request)
    principal = principal_of(request)
    if not principal.admin:  # an admin may look at the job system's groups too
        hub.auth.check_group(principal, name)
    group = await hub.groups.info(name)
    authorize(request, Action.SUBSCRIBE, group.patterns)
    return json_response(describe(hub, group))


async def delete(request: Request) -> Response:
    """``DELETE /v1/groups/{group}`` (admins only): forget the group, its position
    and pending entries; its dead-letter topic stays. 204, or 404."""
    name = _group(request)
    if not principal_of(request).admin:
        raise Forbidden("only an admin may delete a group", field="group")
    await hub_of(request).groups.delete(name)
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/v1/groups/{group}", info, methods=["GET"]),
    Route("/v1/groups/{group}", delete, methods=["DELETE"]),
    Route("/v1/groups/{group}/pull", pull, methods=["POST"]),
    Route("/v1/groups/{group}/ack", _settler("ack"), methods=["POST"]),
    Route("/v1/groups/{group}/nack", _settler("nack"), methods=["POST"]),
    Route("/v1/groups/{group}/extend", _settler("extend"), methods=["POST"]),
]


# -- WebSocket ------------------------------------------------------------------------


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
        lease = _duration(wire.DEFAULT_LEASE if op.lease is None else op.lease,
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
            _duration(op.delay, "delay", 0, MAX_DELAY)
            if op.error is not None and len(op.error) > MAX_ERROR:
                raise InvalidRequest(
                    f"error must be text of at most {MAX_ERROR} characters", field="error")
            action, kw = "nack", {"delay": op.delay, "error": op.error}
        else:
            action, kw = "extend", {"lease": _duration(op.lease, "lease", 0.1, MAX_LEASE)}
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
