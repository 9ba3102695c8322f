"""The Server-Sent Events door: ``text/event-stream`` over one topic or many.

Implements the event stream format of the WHATWG HTML standard, section
"Server-sent events" (9.2). A stream looks like this::

    retry: 2000
    id: k3j9qzx2ab.0.1056
    event: ready
    data: {"cursor":"k3j9qzx2ab.0.1056"}

    id: k3j9qzx2ab.42.1057
    event: message
    data: {"topic":"chat.room1","offset":42,...}

    : hb

Invariants
----------
"the id is the resume cursor": Every event that moves the reader carries its resume cursor in ``id:``.
    The spec: "If the field name is 'id': ... set the last event ID buffer to
    the field value", and on reconnection "the user agent must ... include a
    `Last-Event-ID` HTTP header" with it. So ``Last-Event-ID`` wins over
    ``?after=``: the reconnecting browser repeats the original URL, whose
    ``after`` is stale.
"ready comes first": ``ready`` comes first, with the cursor the subscription starts from, so a
    client that got no message yet still has a resume point; it also carries
    ``retry:``, the reconnection delay in milliseconds.
"a gap keeps the cursor before": A ``gap`` event's ``id`` is the cursor *before* the gap (the last message
    delivered ahead of it): resuming from it says the gap again rather than
    skipping messages that followed it in the same batch.
"error or close ends it": The stream ends after ``error`` (the reader fell behind its buffer, the
    store failed, or the stream's token expired: code ``unauthorized``;
    ``data`` has ``code``, ``message`` and the ``cursor`` to resume from) or
    ``close`` (the hub is shutting down). A browser's
    EventSource reconnects by itself after ``retry`` milliseconds.
"silence is broken by comments": Silence longer than ``server.heartbeat`` seconds is broken by a comment.
    The spec: "Legacy proxy servers are known to, in certain cases, drop HTTP
    connections after a short timeout. To protect against such proxy servers,
    authors can include a comment line (one starting with a ':' character)
    every 15 seconds or so."

Bad input is refused before the stream starts, as an ordinary problem
response: the subscription is made inside the endpoint, and only a working
subscription is handed to the streaming response.

A stream is listed among the cluster's connections
(:mod:`hubbub.core.connections`) until it ends; an operator who disconnects it
ends it with a ``close`` event whose data has the ``reason``.

Presence (:mod:`hubbub.core.presence`): a stream naming topics whose
namespace has presence on is present on them from before ``ready`` (whose
data then carries the stream's ``conn`` id) until the stream ends, for
whatever reason. ``?client=`` and ``?info=`` (JSON text) say who it is.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..core import Gap, Hub, Subscription
from ..core.connections import Conn
from ..core.metrics import DoorCounts
from ..core.presence import Member, check_client
from ..core.subscription import PAGE, State
from ..core.tally import Hold
from ..protocol.depth import check_depth
from ..protocol.errors import (
    HubbubError,
    InvalidCursor,
    InvalidRequest,
    SlowConsumer,
    Unauthorized,
)
from ..protocol.message import Message
from ..protocol.topics import validate_topic
from .auth import Action, authorize, remote_of
from .extensions import body_farewell
from .httpkit import hub_of, query_one, query_topics

RETRY_MS = 2000
#: A comment line with no blank line after it: the spec ignores comment lines,
#: and without a blank line no parser can take it for an (empty) event --
#: httpx-sse dispatches one on any blank line once an id was seen.
HEARTBEAT = b": hb\n"

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode


def event(kind: bytes, cursor: str, data: Any) -> bytes:
    """One SSE event; ``data`` is compact JSON, so it is one ``data:`` line."""
    return b"id: " + cursor.encode() + b"\nevent: " + kind + b"\ndata: " + _encode(data) + b"\n\n"


class EventStream(Response):
    """A streaming response that follows a ready :class:`Subscription` until it ends.

    It owns the subscription from construction on and closes it however the
    stream ends: client gone, slow consumer, hub draining, or an error.
    """

    media_type = "text/event-stream"

    def __init__(self, sub: Subscription, heartbeat: float, member: Member | None = None,
                 *, counts: DoorCounts | None = None, lifetime: float | None = None,
                 hold: Hold | None = None) -> None:
        self.sub = sub
        #: The places its principal holds for it (:mod:`hubbub.core.tally`), given
        #: back as it ends.
        self.hold = hold
        self.heartbeat = heartbeat
        #: Seconds until the stream's token expires (invariant "error or close ends it"), if it does.
        self.lifetime = lifetime
        #: The stream's presence, when it is present on some topic; left as it ends.
        self.member = member
        #: The door's counters (``hub.metrics.sse``): open streams, deliveries.
        self.counts = counts or DoorCounts()
        self.status_code = 200
        self.background = None
        self.client_gone = False
        #: Its entry in the cluster's list of connections, and why an operator
        #: ended it, if one did (:mod:`hubbub.core.connections`).
        self.registered: Conn | None = None
        self.disconnected: str | None = None
        #: The server cut the client off as a slow consumer (:meth:`farewell`).
        self.slow = False
        self._hub: Hub | None = None
        self.init_headers({
            # Caches and buffering proxies (nginx's X-Accel-Buffering) must
            # pass events through as they come.
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        })

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(self._watch(receive))
        if (farewell := body_farewell(scope)) is not None:
            farewell(self.farewell)  # the server says it when it cuts a slow consumer off
        self.counts.open += 1
        try:
            await self._stream(send)
        except OSError:
            pass  # the client went away mid-write
        finally:
            self.counts.open -= 1
            if self._hub is not None and self.registered is not None:
                self._hub.connections.remove(self.registered)
            # Counted here: a stream stuck writing to a client that never
            # reads again never gets to raise SlowConsumer.
            if self.sub.cut_off or self.slow:
                self.counts.slow_consumers += 1
            self.sub.close()
            watcher.cancel()
            if self.hold is not None:
                self.hold.release()
            if self.member is not None:
                await self.member.close()

    def farewell(self) -> bytes:
        """The server cuts the client off as a slow consumer (its socket took
        nothing for the write deadline; ``hubbub.farewell``): the ``error``
        event it then queues, with the cursor of what was sent (invariant "error or close ends it"), as a
        :class:`SlowConsumer` ends the stream. Counted as the stream ends."""
        self.slow = True
        return _error_event(SlowConsumer(
            "subscriber took nothing for the write deadline; resume from the cursor"),
            self.sub.cursor)

    def register(self, hub: Hub, conn: Conn) -> None:
        """Be listed as ``conn``, until the stream ends."""
        self._hub, self.registered = hub, conn

    def disconnect(self, reason: str) -> None:
        """An operator ends the stream: a ``close`` event with the reason, then the end."""
        self.disconnected = reason
        self.sub.close()

    async def _watch(self, receive: Receive) -> None:
        # Closing the subscription wakes a reader waiting in next_batch at once.
        with contextlib.suppress(Exception):  # a broken receive means gone, too
            while (await receive())["type"] != "http.disconnect":
                pass
        self.client_gone = True
        self.sub.close()

    async def _stream(self, send: Send) -> None:
        sub = self.sub
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        # "If the field value consists of only ASCII digits, then interpret the
        # field value as an integer in base ten, and set the event stream's
        # reconnection time to that integer." It rides on the ready event: a
        # block of its own would be dispatched by httpx-sse as an empty event.
        ready = {"cursor": sub.cursor}
        if self.member is not None:
            ready["conn"] = self.member.conn
        await self._send(send, b"retry: %d\n" % RETRY_MS + event(b"ready", sub.cursor, ready))
        loop = asyncio.get_running_loop()
        expires = None if self.lifetime is None else loop.time() + self.lifetime
        while True:
            before = sub.cursor
            timeout = self.heartbeat
            try:
                if expires is not None:
                    timeout = min(timeout, expires - loop.time())
                    if timeout <= 0:
                        raise Unauthorized("token expired", cursor=sub.cursor)
                batch = await sub.next_batch(PAGE, timeout=timeout)
            except HubbubError as exc:  # SlowConsumer, Unavailable, an expired token
                await self._send(send, _error_event(exc, exc.extra.get("cursor", sub.cursor)))
                break
            if batch:
                await self._send(send, self._encode_batch(batch, before))
                self.counts.sent(batch)
            elif sub.state is State.CLOSED:
                if not self.client_gone:
                    closing: dict[str, Any] = {"cursor": sub.cursor}
                    if self.disconnected is not None:
                        closing["reason"] = self.disconnected
                    await self._send(send, event(b"close", sub.cursor, closing))
                break
            elif expires is None or loop.time() < expires:
                await self._send(send, HEARTBEAT)
        if not self.client_gone:
            await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    def _encode_batch(batch: list[Message | Gap], before: str) -> bytes:
        # One write per batch: the cached per-message event bytes are joined,
        # so a busy stream costs one send, not one per message.
        parts: list[bytes] = []
        cursor = before
        for ev in batch:
            if isinstance(ev, Message):
                parts.append(ev.sse_event())
                cursor = ev.cursor
            else:  # invariant "a gap keeps the cursor before": a gap keeps the cursor of what came before it
                parts.append(event(b"gap", cursor, ev.to_dict()))
        return b"".join(parts)

    async def _send(self, send: Send, body: bytes) -> None:
        if not self.client_gone:
            await send({"type": "http.response.body", "body": body, "more_body": True})


def _error_event(exc: HubbubError, cursor: str) -> bytes:
    """The ``error`` event that ends a stream (invariant "error or close ends it")."""
    return event(b"error", cursor, {"code": exc.code, "message": exc.message, "cursor": cursor})


async def _subscribe(request: Request, patterns: list[str]) -> EventStream:
    hub = hub_of(request)
    principal = authorize(request, Action.SUBSCRIBE, patterns)
    after = query_one(request, "after")
    last_id = request.headers.get("last-event-id") or None
    info_text = query_one(request, "info")
    if info_text is not None:
        check_depth(info_text, hub.config.limits.json_depth, field="info")
    try:
        info = None if info_text is None else _decode(info_text)
    except msgspec.DecodeError:
        raise InvalidRequest("info must be JSON text", field="info") from None
    client, info = check_client(query_one(request, "client"), info)
    client = hub.auth.presence_client(principal, client)
    present = hub.presence.topics(patterns)
    peer = request.client.host if request.client else None
    hold = hub.tally.hold(principal, peer)  # a stream is a connection and a subscription
    try:
        hold.subscribe()
        try:
            sub = await hub.subscribe(patterns, last_id or after, default="end")
        except InvalidCursor as exc:
            if last_id is not None:
                exc.field = "Last-Event-ID"
            raise
        lifetime = hub.auth.lifetime(principal)
        stream = EventStream(sub, hub.config.server.heartbeat, counts=hub.metrics.sse,
                             lifetime=lifetime, hold=hold)
        conn = hub.connections.add("sse", principal.subject, remote_of(request.scope),
                                   topics=lambda: list(patterns), close=stream.disconnect)
        stream.register(hub, conn)
        if present:
            stream.member = hub.presence.member(conn.id)
            try:
                await stream.member.join(present, client, info)
            except BaseException:
                hub.connections.remove(conn)
                sub.close()
                raise
    except BaseException:
        hold.release()
        raise
    return stream


async def topic_events(request: Request) -> Response:
    topic = validate_topic(request.path_params["topic"])
    return await _subscribe(request, [topic])


async def events(request: Request) -> Response:
    return await _subscribe(request, query_topics(request))


routes: list[BaseRoute] = [
    Route("/v1/topics/{topic}/events", topic_events, methods=["GET"]),
    Route("/v1/events", events, methods=["GET"]),
]

__all__ = ["EventStream", "event", "routes"]
