"""The WebSocket door: ``GET /v1/ws`` (RFC 6455), ops in JSON or MessagePack frames.

The protocol is in ``docs/websocket.md``; frames are decoded by the pure
:mod:`hubbub.protocol.wire`. This module is the raw ASGI endpoint around it: the
handshake, one reader, one pump task per subscription, and closing.

Theory of operation
-------------------
The endpoint's own task reads frames. A ``pub``, ``req``, ``reply``, ``ack``,
``nack`` or ``extend`` is handed to the connection's
:class:`~hubbub.transports.ws_pipeline.Pipeline` and the next frame is read at
once, so the ops a client keeps in flight reach the store together and share
its commits; they are still stored in the order the client sent them and
answered in that order (:mod:`hubbub.transports.ws_pipeline`). Any other op
waits until every op before it was answered, then is carried out alone. Each
subscription gets a *pump* task that drains :meth:`Subscription.next_batch`
and writes its messages.

Rule 1. Every frame goes out under one lock, so frames never interleave and a
        pump sends a whole batch per lock. Message frames are the bytes cached
        on the :class:`~hubbub.protocol.message.Message` (``ws_json()`` or
        ``ws_msgpack()``): one serialization per message for every subscriber.
Rule 2. A pump records the cursor of each message once its frame is handed to
        the server, so the cursor the hub hands back when it closes the
        connection is exactly what the client received: nothing lost, nothing
        twice.
Rule 3. A slow client backs up only its own pump (the server's ``send``
        waits while the socket's buffer is full); its subscription's bounded
        buffer then overflows and cuts it off (:class:`SlowConsumer`): the hub
        closes with 4008 and the resume cursor. The publisher and the other
        subscribers never wait for it.
Rule 4. A deliberate close sets ``closing`` first: from then on nothing but the
        final ``close`` frame (the cursor of every subscription) and the close
        frame itself is sent. A drained hub closes with 1012, a slow consumer
        with 4008, an unanswerable frame with the code its error maps to in
        :mod:`hubbub.transports.problems`, an internal error with 1011.
Rule 5. An op that fails with a :class:`~hubbub.protocol.errors.HubbubError` is answered
        with an ``err`` frame and the connection carries on; nothing a peer
        sends ends the reader except by a deliberate close.
Rule 6. On a server with the ``hubbub.frames`` writer (``hubbub serve``), a
        live subscription with nothing to send *parks* instead of keeping a
        pump task waiting (:meth:`Subscription.park`): the fan-out's wake-up
        schedules one ``_flush`` per connection and loop pass, which writes
        every ready frame in one write when that needs no wait (the lock is
        free, the socket's buffer below its mark). Anything else (a full
        socket, a busy lock, an end, an error, a cut-off) starts a pump again,
        which handles it by Rules 1 to 4 and parks when it is done. An idle
        subscription then holds no task, and a delivery costs no task switch.

Consumer-group subscriptions (``sub`` with ``group``) and their ``ack``,
``nack`` and ``extend`` ops are carried out by
:class:`hubbub.transports.groups.GroupFeeds`, one per connection: a pump per
group subscription pulls while its window has room and sends under the same
lock (Rules 1 and 4 hold for them too); when the connection ends, what it did
not settle is nacked so that other workers get it at once.

Request-reply (:mod:`hubbub.core.requests`): a ``req`` is published in op
order, like a ``pub`` (or refused at once with ``err`` ``no-responders``), but
its answer (the reply, or ``err`` ``responder-error`` or ``timeout``) comes
when the reply does, from a task of its own, so the connection's other ops
(a ``reply`` to some other request, say) go on meanwhile; only an ``err``
for a request that could not be published is answered in its place. A
``reply`` (with ``data``, or ``error`` for a responder that failed) is
answered like a ``pub``. When the connection ends, its waiting requests are
given up: replies to them are refused from then on.

Presence (:mod:`hubbub.core.presence`): the connection has one
:class:`~hubbub.core.presence.Member`; a ``sub`` that names topics with
presence joins them before its ``ok`` (which then carries the connection's
``conn`` id), an ``unsub`` leaves them, and the end of the connection
leaves whatever is left.

Authentication (:mod:`hubbub.core.auth`, ``docs/auth.md``): the upgrade is
authenticated once, by ``Authorization: Bearer`` or ``?token=``; bad
credentials refuse it with 401 (a close with 4401 where the server cannot
answer an upgrade with a response). An upgrade with no credentials, on a hub
that lets no anonymous client in, is accepted only to hear an ``auth`` op: any
other first op, no ``auth`` within ``AUTH_TIMEOUT`` seconds or a refused token
closes the connection with 4401 and the reason. Each op is then authorized
per topic: a ``pub``, ``req`` or ``sub`` on a topic the token does not allow
is answered with ``err`` (code ``forbidden``) and the connection carries on.
When the token expires the connection closes with 4401 and the resume cursors
(Rule 4), so the client can come back with a fresh token and lose nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Message as ASGIMessage
from starlette.types import Receive, Scope, Send

from ..core import Hub, Subscription
from ..core.auth import OPEN, Action, Principal
from ..core.connections import Conn
from ..core.hub import encode_value
from ..core.presence import Member, check_client
from ..core.requests import DEFAULT_TIMEOUT, PendingRequest
from ..core.subscription import PAGE, Event, State
from ..core.tally import Hold
from ..loop.passes import PerPass
from ..loop.tasks import cancel_and_wait
from ..protocol import wire
from ..protocol.errors import (
    HubbubError,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    SlowConsumer,
    Unauthorized,
    Unavailable,
)
from ..protocol.message import (
    BINARY_FRAME,
    ERROR_TYPE,
    JSON,
    OCTET,
    TEXT_FRAME,
    Message,
    media_type,
    ws_frame,
)
from ..protocol.topics import validate_pattern, validate_topic
from .auth import authenticate, remote_of, within_lifetime
from .extensions import (
    GatherWrites,
    SendFrames,
    WriteFrames,
    frames_farewell,
    frames_gatherer,
    frames_sender,
    frames_writer,
)
from .groups import GroupFeeds
from .problems import close_code, problem, problem_from, ws_error
from .ws_pipeline import Pipeline

log = logging.getLogger("hubbub")

#: Subscriptions one connection may hold at once.
MAX_SUBSCRIPTIONS = 100
#: The close code of a connection an operator disconnected (``DELETE /v1/connections/{id}``).
DISCONNECTED = 4010
#: Requests (``req``) one connection may have waiting at once.
MAX_REQUESTS = 100
#: Seconds a connection that came without credentials has to send ``auth``.
AUTH_TIMEOUT = 10.0

_json_decode = msgspec.json.Decoder().decode
_msgpack_decode = msgspec.msgpack.Decoder().decode


@dataclass(eq=False, slots=True)
class _Sub:
    """One subscription of a connection and the cursor of what was sent of it."""

    id: int
    sub: Subscription
    cursor: str
    task: asyncio.Task[None] | None = None
    #: The topics this subscription made the connection present on.
    present: tuple[str, ...] = ()
    #: Its connection, when idle subscriptions park there (Rule 6).
    conn: Connection | None = None

    def ready(self) -> None:
        """What the parked subscription calls when it has news (Rule 6)."""
        assert self.conn is not None
        self.conn._ready(self)


class Connection:
    """One accepted WebSocket: its subscriptions, its send lock, its closing state."""

    __slots__ = ("hub", "codec", "subs", "closing", "_send", "_frames", "_binary", "_lock",
                 "_next_sub", "_close_task", "groups", "_member", "requests", "_write",
                 "principal", "_auth_timer", "_loop", "gather", "_pipeline", "hold",
                 "peer", "registered", "cut_off")

    def __init__(
        self, hub: Hub, codec: wire.Codec, send: Send, frames: SendFrames | None = None,
        write: WriteFrames | None = None, principal: Principal | None = OPEN,
        gather: GatherWrites = contextlib.nullcontext, hold: Hold | None = None,
        peer: str | None = None,
    ) -> None:
        self.hub = hub
        self.codec = codec
        self.subs: dict[int, _Sub] = {}
        self.closing = False
        self._send = send
        #: The server's ``hubbub.frames`` sender (:mod:`hubbub.transports.extensions`),
        #: if it has one.
        self._frames = frames
        #: Its gatherer: the writes of a pass's flush made together at its end.
        self.gather = gather
        #: Its writer (no waiting): with it, idle subscriptions park (Rule 6).
        self._write = write if frames is not None else None
        self._binary = codec.binary
        self._lock = asyncio.Lock()
        #: The loop the connection is served on, for the flush of a pass (Rule 6):
        #: asking for the running loop costs a getpid() system call on Python 3.11.
        self._loop = asyncio.get_running_loop()
        self._next_sub = 1
        self._close_task: asyncio.Task[None] | None = None
        #: Consumer-group subscriptions (``sub`` with ``group``), apart from
        #: ``subs``: they have no cursor, the group keeps their position.
        self.groups = GroupFeeds(self)
        #: Presence and waiting requests: made on first use (most connections
        #: have neither, and an idle connection should stay small).
        self._member: Member | None = None
        #: Tasks waiting for the replies of this connection's ``req`` ops.
        self.requests: set[asyncio.Task[None]] | None = None
        #: Who the client is; ``None`` until its ``auth`` op (no credentials on the upgrade).
        self.principal = principal
        #: The places its principal holds for it (:mod:`hubbub.core.tally`), and
        #: the client's address they are counted by when it has no subject.
        self.hold = hold
        self.peer = peer
        self._auth_timer: asyncio.TimerHandle | None = None
        #: The ops in flight, answered in order (:mod:`hubbub.transports.ws_pipeline`);
        #: made on first use (a subscriber that never publishes should stay small).
        self._pipeline: Pipeline | None = None
        #: Its entry in the cluster's list of connections (:mod:`hubbub.core.connections`).
        self.registered: Conn | None = None
        #: The server cut it off as a slow consumer (:meth:`farewell`).
        self.cut_off = False
        self._watch_credentials()

    # -- reading ----------------------------------------------------------------

    async def serve(self, receive: Receive) -> None:
        """Carry out the client's ops until the connection is gone; then clean up."""
        try:
            while True:
                event = await receive()
                if event["type"] == "websocket.disconnect":
                    return
                if event["type"] != "websocket.receive" or self.closing:
                    continue  # past a deliberate close, frames are dropped (Rule 4)
                text = event.get("text")
                await self.receive_frame(text if text is not None else event.get("bytes") or b"")
        finally:
            await self._clean_up()

    async def receive_frame(self, frame: str | bytes) -> None:
        """Decode one frame and carry out its op (Rule 5).

        A pipelined op (``pub``, ``req``, ``reply``, ``ack``, ``nack``,
        ``extend``) is only started: this returns once the pipeline has room
        for the next one. Any other op is carried out after every op before
        it was answered, and this returns when it is done.
        """
        op = self.codec.decode(frame, max_depth=self.hub.config.limits.json_depth + 1)
        if isinstance(op, wire.Refusal):
            if op.op_id is None:
                self.close(close_code(op.error), op.error.message)
            else:
                self.pipeline.answer(ws_error(op.error, op.op_id))
            return
        if self.principal is None and not isinstance(op, wire.Auth):
            self.close(4401, "authentication required: send an auth op first")
            return
        if isinstance(op, wire.Sub | wire.Unsub | wire.Ping | wire.Auth):
            if self._pipeline is not None:
                await self._pipeline.drain()  # Barrier
            answer = await self._answered(op.id, self._alone(op))
            if answer is not None:
                await self.send_obj(answer)
            return
        pipeline = self.pipeline
        match op:
            case wire.Pub():
                pipeline.start(self._answered(op.id, self._pub(op, pipeline.lane)),
                               f"hubbub-ws-pub-{op.id}")
            case wire.Req():
                self._req(op)
            case wire.Reply():
                before, lane = pipeline.hold_lane()
                pipeline.start(self._answered(op.id, self._reply(op, before, lane)),
                               f"hubbub-ws-reply-{op.id}")
            case wire.Ack() | wire.Nack() | wire.Extend():
                pipeline.start(self._answered(op.id, self.groups.settle(op)),
                               f"hubbub-ws-settle-{op.id}")
        await pipeline.room()

    @property
    def pipeline(self) -> Pipeline:
        """The connection's ops in flight (:mod:`hubbub.transports.ws_pipeline`)."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self._send_answers)
        return self._pipeline

    async def _alone(self, op: wire.Sub | wire.Unsub | wire.Ping | wire.Auth) -> None:
        """Carry out an op that is not pipelined; it sends its own answer."""
        match op:
            case wire.Sub():
                await self._sub(op)
                self.hub.connections.changed()  # the admin list shows subscriptions
            case wire.Unsub():
                await self._unsub(op)
                self.hub.connections.changed()
            case wire.Ping():
                await self.send_obj({"op": "pong", "id": op.id})
            case wire.Auth():
                await self._auth(op)

    async def _answered(self, op_id: int | str | None, work: Awaitable[Any]) -> Any:
        """What ``work`` answers, or the ``err`` for its error (Rule 5); ``None``
        for no answer (the client is gone, or an internal error closed the
        connection)."""
        try:
            return await work
        except HubbubError as exc:
            return ws_error(exc, op_id)
        except OSError:
            return None  # the client is gone; the next receive() says so
        except Exception:
            log.exception("websocket frame failed (op id %r)", op_id)
            self.close(1011, "internal error")
            return None

    # -- authentication -----------------------------------------------------------

    def _watch_credentials(self) -> None:
        """Close with 4401 when the client took too long to authenticate, or when
        its token expires (then with the resume cursors)."""
        if self._auth_timer is not None:
            self._auth_timer.cancel()
            self._auth_timer = None
        principal = self.principal
        if principal is None:
            close = functools.partial(self.close, 4401, "authentication timed out")
            delay = AUTH_TIMEOUT
        elif (life := self.hub.auth.lifetime(principal)) is not None:
            close = functools.partial(self.close, 4401, "token expired", resume=True)
            delay = life
        else:
            return
        self._auth_timer = asyncio.get_running_loop().call_later(delay, close)

    async def _auth(self, op: wire.Auth) -> None:
        if self.principal is not None and not self.principal.anonymous:
            raise InvalidRequest("the connection is already authenticated", field="op")
        try:
            principal = self.hub.auth.verify(op.token) if self.hub.auth.enabled else OPEN
        except Unauthorized as exc:
            self.close(close_code(exc), exc.message)
            return
        try:
            hold = self.hub.tally.hold(principal, self.peer)
            if self.hold is not None:
                try:
                    hold.subscribe(self.hold.subscriptions)  # under its own name now
                except LimitExceeded:
                    hold.release()
                    raise
        except LimitExceeded as exc:
            self.close(close_code(exc), exc.message)
            return
        if self.hold is not None:
            self.hold.release()
        self.hold = hold
        self.principal = principal
        self._watch_credentials()
        if self.registered is not None:
            self.registered.subject = principal.subject
            self.hub.connections.changed()
        await self.send_obj({"op": "ok", "id": op.id, **principal.to_dict()})

    def _check(self, action: Action, topic: str, field: str, *, concrete: bool = False) -> None:
        """Refuse an op on a topic its principal may not touch (an ``err`` frame)."""
        principal = self.principal
        assert principal is not None  # receive_frame() lets only auth through before
        if principal.admin:
            return
        if concrete:
            validate_topic(topic, field=field)
        self.hub.auth.check(principal, action, topic, field=field)

    # -- ops ----------------------------------------------------------------------

    async def _pub(self, op: wire.Pub, lane: asyncio.Future[None] | None) -> dict[str, Any]:
        """Store one message; its ``ok``. Waits for ``lane`` (a ``req`` or
        ``reply`` before it) first, so it is stored in op order."""
        self._check(Action.PUBLISH, op.topic, "topic", concrete=True)
        data, content_type = self._payload(op)
        if lane is not None:
            await lane  # no wait at all once it is done
        result = await self.hub.publish(op.topic, data, content_type, op.key,
                                        owner=self.principal.subject if self.principal else None,
                                        limit_topics=True)
        m = result.message
        reply: dict[str, Any] = {
            "op": "ok", "id": op.id, "topic": m.topic, "offset": m.offset,
            "cursor": m.cursor, "time": m.time, "msg_id": m.id,
        }
        if result.duplicate:
            reply["duplicate"] = True
        return reply

    def _payload(self, op: wire.Pub | wire.Req | wire.Reply) -> tuple[bytes, str]:
        """The bytes to store and their content type, as the subprotocol carries them."""
        ctype = JSON if op.content_type is None else media_type(
            op.content_type, field="content_type")
        if not self._binary:
            if ctype == JSON:
                return bytes(op.data), JSON  # the hub compacts it
            # Non-JSON payloads travel base64-encoded in JSON, as msg frames carry them.
            text = _json_decode(op.data)
            if not isinstance(text, str):
                raise InvalidRequest(
                    "data must be a base64 string when content_type is not JSON", field="data")
            try:
                return base64.b64decode(text, validate=True), ctype
            except (binascii.Error, ValueError):
                raise InvalidRequest("data is not valid base64", field="data") from None
        try:
            value = _msgpack_decode(op.data)
        except msgspec.DecodeError:  # pragma: no cover - Raw came from a valid frame
            raise InvalidRequest("malformed data", field="data") from None
        if isinstance(value, bytes):
            return value, OCTET if op.content_type is None else ctype
        if ctype != JSON:
            raise InvalidRequest(
                "data must be binary when content_type is not JSON", field="data")
        return encode_value(value)

    @property
    def member(self) -> Member:
        """The connection's presence (:mod:`hubbub.core.presence`)."""
        if self._member is None:
            self._member = self.hub.presence.member(
                None if self.registered is None else self.registered.id)
        return self._member

    def _req(self, op: wire.Req) -> None:
        """Start a request: its task publishes it, in op order, then waits for
        its reply; the pipeline answers in its place only if it could not be
        published."""
        if self.requests is None:
            self.requests = set()
        pipeline = self.pipeline
        if len(self.requests) >= MAX_REQUESTS:
            pipeline.answer(ws_error(InvalidRequest(
                f"at most {MAX_REQUESTS} requests may wait per connection", field="op"), op.id))
            return
        sent: asyncio.Future[dict[str, Any] | None] = self._loop.create_future()
        before, lane = pipeline.hold_lane()
        task = asyncio.create_task(self._request(op, before, lane, sent),
                                   name=f"hubbub-ws-req-{op.id}")
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)
        pipeline.wait_for(sent)

    async def _request(
        self, op: wire.Req, before: asyncio.Future[None] | None, lane: asyncio.Future[None],
        sent: asyncio.Future[dict[str, Any] | None],
    ) -> None:
        """Publish a request once ``before`` is handed off, say so through
        ``sent`` (``None``, or the ``err``), then wait for its reply and send
        it as the ``req``'s answer."""
        try:
            pending = await self._answered(op.id, self._send_request(op, before, lane))
        except BaseException:
            sent.cancel()  # cancelled: the connection is gone
            raise
        finally:
            Pipeline.hand_off(lane)
        if not isinstance(pending, PendingRequest):
            sent.set_result(pending)  # its err (or None: the connection is closing)
            return
        sent.set_result(None)
        try:
            try:
                m = await pending.wait()
            except HubbubError as exc:  # GatewayTimeout, ResponderError, or Unavailable
                await self.send_obj(ws_error(exc, op.id))
                return
            await self.send_obj(
                {"op": "ok", "id": op.id, "request": pending.id, "reply": m.to_dict()})
        except OSError:
            pass  # the client is gone
        except Exception:
            log.exception("websocket request failed (op id %r)", op.id)
            self.close(1011, "internal error")

    async def _send_request(
        self, op: wire.Req, before: asyncio.Future[None] | None, lane: asyncio.Future[None],
    ) -> Any:
        """Check and publish a request after ``before``; its :class:`PendingRequest`."""
        if before is not None:
            await before  # first: this op's lane is free only after the one before
        self._check(Action.PUBLISH, op.topic, "topic", concrete=True)
        data, content_type = self._payload(op)
        timeout = op.timeout
        if timeout is None:
            timeout = min(DEFAULT_TIMEOUT, self.hub.config.server.max_wait)
        timeout = within_lifetime(self.hub, self.principal, timeout)  # as on HTTP
        return await self.hub.requests.send(
            op.topic, data, content_type, timeout=timeout,
            handing_off=functools.partial(Pipeline.hand_off, lane))

    async def _reply(
        self, op: wire.Reply, before: asyncio.Future[None] | None, lane: asyncio.Future[None],
    ) -> dict[str, Any]:
        """Store a reply after ``before``, handing ``lane`` on; its ``ok``."""
        try:
            if before is not None:
                await before  # first: this op's lane is free only after the one before
            if op.error is not None:  # wire.Reply made sure there is no data then
                data, content_type = op.error.encode(), ERROR_TYPE
            else:
                data, content_type = self._payload(op)
            m = await self.hub.requests.reply(
                op.to, data, content_type, handing_off=functools.partial(Pipeline.hand_off, lane))
        finally:
            Pipeline.hand_off(lane)
        return {
            "op": "ok", "id": op.id, "topic": m.topic, "offset": m.offset,
            "cursor": m.cursor, "time": m.time, "msg_id": m.id,
        }

    async def _sub(self, op: wire.Sub) -> None:
        """Subscribe, holding one more of the principal's subscriptions."""
        hold = self.hold
        if hold is None:
            await self._subscribe(op)
            return
        hold.subscribe()
        held = len(self.subs) + len(self.groups.feeds)
        try:
            await self._subscribe(op)
        except BaseException:
            if len(self.subs) + len(self.groups.feeds) == held:
                hold.unsubscribe()
            raise

    async def _subscribe(self, op: wire.Sub) -> None:
        if len(self.subs) + len(self.groups.feeds) >= MAX_SUBSCRIPTIONS:
            raise InvalidRequest(
                f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection", field="topics")
        for i, pattern in enumerate(op.topics):  # a group's, too: consuming is reading
            self._check(Action.SUBSCRIBE, pattern, f"topics[{i}]")
        if op.group is not None:
            for name in ("client", "info"):
                if getattr(op, name) is not None:
                    raise InvalidRequest(
                        f"{name} applies to subscriptions without group", field=name)
            await self.groups.subscribe(op, self._next_sub)
            self._next_sub += 1
            return
        for name in ("window", "lease", "start"):
            if getattr(op, name) is not None:
                raise InvalidRequest(f"{name} applies to group subscriptions only", field=name)
        for i, pattern in enumerate(op.topics):
            validate_pattern(pattern, field=f"topics[{i}]")
        client, info = check_client(op.client, op.info)
        assert self.principal is not None  # authenticated before any sub
        client = self.hub.auth.presence_client(self.principal, client)
        try:
            present = self.hub.presence.topics(op.topics)
            sub = await self.hub.subscribe(op.topics, op.after)
        except HubbubError as exc:
            if exc.field == "topic":
                exc.field = "topics"
            raise
        try:
            if present:
                await self.member.join(present, client, info)
        except BaseException:
            sub.close()
            raise
        s = _Sub(self._next_sub, sub, sub.cursor, present=tuple(present))
        if self._write is not None:
            s.conn = self
        self._next_sub += 1
        self.subs[s.id] = s  # from here on _clean_up() closes it, whatever happens
        reply: dict[str, Any] = {"op": "ok", "id": op.id, "sub": s.id, "cursor": s.cursor}
        if present:
            reply["conn"] = self.member.conn
        # The reply goes out before the pump starts: "ok" precedes every msg of it.
        await self.send_obj(reply)
        self._start_pump(s)

    async def _unsub(self, op: wire.Unsub) -> None:
        if (op.sub is None) == (op.topics is None):
            raise InvalidRequest("unsub needs either sub or topics", field="sub")
        feeds = self.groups.feeds
        if op.sub is not None:
            if op.sub not in self.subs and op.sub not in feeds:
                raise NotFound("no such subscription on this connection", field="sub")
            ended = [op.sub]
        else:
            wanted = set(op.topics or ())
            ended = [i for i, s in self.subs.items() if set(s.sub.topics.patterns) <= wanted]
            ended += [i for i, f in feeds.items() if set(f.patterns) <= wanted]
            if not ended:
                raise NotFound("no subscription has only these topics", field="topics")
        if self.hold is not None:
            self.hold.unsubscribe(len(ended))
        cursors: dict[str, str | None] = {}
        for i in sorted(ended):
            if i in feeds:
                await self.groups.stop(feeds[i])
                cursors[str(i)] = None  # a group keeps its own position
                continue
            s = self.subs.pop(i)
            await self._stop(s)
            if s.present:
                await self.member.leave(s.present, "unsub")
            cursors[str(i)] = s.cursor
        # After this reply no msg frame of these subscriptions follows: the pumps are done.
        await self.send_obj({"op": "ok", "id": op.id, "subs": cursors})

    async def _stop(self, s: _Sub) -> None:
        s.sub.close()
        await cancel_and_wait(s.task)

    # -- writing ------------------------------------------------------------------

    def frame(self, obj: Any) -> ASGIMessage:
        """The ASGI send event of one server frame."""
        data = self.codec.encode(obj)
        if self._binary:
            return {"type": "websocket.send", "bytes": data}
        return {"type": "websocket.send", "text": data.decode()}

    def frame_bytes(self, obj: Any) -> bytes:
        """One server frame of ``obj``, as bytes to write raw (``hubbub.frames``)."""
        return ws_frame(self.codec.encode(obj), BINARY_FRAME if self._binary else TEXT_FRAME)

    async def send_obj(self, obj: Any) -> None:
        """Send one server frame, unless the connection is closing (Rule 4):
        framed here and written raw where the server offers ``hubbub.frames``
        (a publisher's every ``ok`` goes this way), else as an ASGI send."""
        frames = self._frames
        if frames is None:
            event = self.frame(obj)
            async with self._lock:
                if not self.closing:
                    await self._send(event)
            return
        data = self.frame_bytes(obj)
        async with self._lock:
            if not self.closing:
                await frames(data)

    async def _send_answers(self, answers: list[Any]) -> None:
        """Send the answers of ops in one write (the pipeline's answerer);
        nothing raised: a client that is gone is seen by the reader."""
        try:
            if len(answers) == 1:
                await self.send_obj(answers[0])
            elif self._frames is None:
                await self.send_many([self.frame(obj) for obj in answers])
            else:
                data = b"".join([self.frame_bytes(obj) for obj in answers])
                async with self._lock:
                    if not self.closing:
                        await self._frames(data)
        except OSError:
            pass
        except Exception:
            log.exception("websocket answers failed")
            self.close(1011, "internal error")

    async def send_many(self, events: list[ASGIMessage]) -> None:
        """Send frames in one go, stopping if the connection starts closing (Rule 4)."""
        async with self._lock:
            for event in events:
                if self.closing:
                    return
                await self._send(event)

    def _start_pump(self, s: _Sub, taken: list[Event] | None = None) -> None:
        s.task = asyncio.create_task(self._pump(s, taken), name=f"hubbub-ws-sub-{s.id}")

    async def _pump(self, s: _Sub, taken: list[Event] | None = None) -> None:
        """Write a subscription's events until it ends or parks (Rules 1 to 3, 6).

        ``taken`` is a batch :meth:`_flush` took but could not write without
        waiting. While the subscription catches up, the next page is read
        from the store while the last one is written.
        """
        sub = s.sub
        write = self._send_events if self._frames is None else self._write_frames
        parking = s.conn is not None
        timeout = 0 if parking else None
        ahead: asyncio.Future[list[Event]] | None = None
        try:
            while True:
                if taken is not None:
                    batch, taken = taken, None
                elif ahead is not None:
                    batch, ahead = await ahead, None
                else:
                    if parking and sub.park(s.ready):
                        s.task = None  # parked: _flush takes over (Rule 6)
                        return
                    batch = await sub.next_batch(PAGE, timeout=timeout)
                if not batch:
                    if parking and sub.state is not State.CLOSED:
                        continue  # nothing more for now: park
                    # Closed: by an unsub (which also cancels us) or by a draining hub.
                    if self.hub.draining:
                        self.close(1012, "service restart", resume=True)
                    return
                if sub.state is State.CATCHING_UP:
                    ahead = asyncio.ensure_future(sub.next_batch(PAGE, timeout=timeout))
                async with self._lock:
                    if self.closing:
                        return
                    await write(s, batch)
                self.hub.metrics.ws.sent(batch)
        except SlowConsumer:
            self.close(4008, "slow consumer", resume=True)
        except HubbubError as exc:  # the store failed mid-read (Unavailable: 1013)
            self.close(close_code(exc), exc.code, resume=True)
        except OSError:
            pass  # the client is gone; serve() sees the disconnect
        except Exception:
            log.exception("websocket subscription pump failed")
            self.close(1011, "internal error")
        finally:
            if ahead is not None:
                ahead.cancel()
                ahead.add_done_callback(_retrieve)

    def _ready(self, s: _Sub) -> None:
        """A parked subscription has news (called from the fan-out): flush it
        once the fan-out is done, so that whatever it hands over meanwhile
        goes out in the same write."""
        _flushes.add(s, self._loop)

    def _flush(self, s: _Sub) -> None:
        """Write a parked subscription's ready events now, if that needs no
        wait; else, or for anything but events, hand it back to a pump (Rule 6)."""
        if self.closing or s.task is not None or self.subs.get(s.id) is not s:
            return  # closing (Rule 4), a pump has it, or it ended
        assert self._write is not None
        sub = s.sub
        try:
            while not self._lock.locked():
                batch = sub.take_ready(PAGE)
                if batch is None:
                    break  # an end, an error, a cut-off: the pump's to say
                if not batch:
                    if sub.park(s.ready):
                        return
                    continue
                data, cursor = self._frames_of(s, batch)
                if not self._write(data):
                    self._start_pump(s, batch)  # it waits for the socket (and counts)
                    return
                if cursor is not None:
                    s.cursor = cursor  # Rule 2
                self.hub.metrics.ws.sent(batch)
                if sub.park(s.ready):
                    return  # all written: wait for the next news
        except OSError:
            return  # the client is gone; serve() sees the disconnect
        except Exception:
            log.exception("websocket subscription flush failed")
            self.close(1011, "internal error")
            return
        self._start_pump(s)

    async def _send_events(self, s: _Sub, batch: list[Event]) -> None:
        """A batch as ASGI sends, one per frame (any ASGI server); under the lock."""
        send, binary = self._send, self._binary
        for event in batch:
            if self.closing:
                return
            if isinstance(event, Message):
                if binary:
                    await send({"type": "websocket.send", "bytes": event.ws_msgpack()})
                else:
                    await send({"type": "websocket.send", "text": event.ws_text()})
                s.cursor = event.cursor
            else:
                await send(self.frame({"op": "gap", "sub": s.id, **event.to_dict()}))

    async def _write_frames(self, s: _Sub, batch: list[Event]) -> None:
        """A batch as pre-built frames in one write (``hubbub.frames``); under the lock."""
        assert self._frames is not None
        data, cursor = self._frames_of(s, batch)
        await self._frames(data)
        if cursor is not None:
            s.cursor = cursor  # Rule 2: every frame of the batch is handed over

    def _frames_of(self, s: _Sub, batch: list[Event]) -> tuple[bytes, str | None]:
        """A batch's frames, joined, and the cursor after its last message."""
        binary = self._binary
        last = batch[-1]
        if isinstance(batch[0], Message):
            # Gaps come before the messages of a batch: this one has none.
            msgs: list[Message] = batch  # type: ignore[assignment]
            return _joined(msgs, binary), msgs[-1].cursor
        frames = []
        for event in batch:
            if isinstance(event, Message):
                frames.append(event.ws_msgpack_frame() if binary else event.ws_frame())
            else:
                frames.append(self.frame_bytes({"op": "gap", "sub": s.id, **event.to_dict()}))
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        return data, last.cursor if isinstance(last, Message) else None

    def topic_list(self) -> list[str]:
        """The patterns of its subscriptions, group ones too (for the connection list)."""
        out = [p for s in self.subs.values() for p in s.sub.topics.patterns]
        out += [p for f in self.groups.feeds.values() for p in f.patterns]
        return sorted(set(out))

    def disconnect(self, reason: str) -> None:
        """An operator disconnects it (:mod:`hubbub.core.connections`): close 4010."""
        self.close(DISCONNECTED, reason, resume=True)

    # -- closing ------------------------------------------------------------------

    def close(self, code: int, reason: str, *, resume: bool = False) -> None:
        """Close the connection deliberately (Rule 4). Idempotent; returns at once.

        With ``resume``, the close reason ends with "; resume from CURSOR" when
        the connection has one subscription (several: see the close frame).
        """
        if self.closing:
            return
        self.closing = True
        self._close_task = asyncio.create_task(self._close(code, reason, resume))

    async def _close(self, code: int, reason: str, resume: bool) -> None:
        async with self._lock:
            close, reason = self._close_op(code, reason, resume)
            with contextlib.suppress(OSError):
                await self._send(self.frame(close))
                await self._send(
                    {"type": "websocket.close", "code": code, "reason": wire.fit_reason(reason)})

    def _close_op(self, code: int, reason: str, resume: bool) -> tuple[dict[str, Any], str]:
        """The final ``close`` frame's object (the cursor of every subscription)
        and the close reason (with the cursor to resume from, if ``resume``)."""
        cursors = {str(i): s.cursor for i, s in self.subs.items()}
        if resume and len(cursors) == 1:
            reason = f"{reason}; resume from {next(iter(cursors.values()))}"
        elif resume and cursors:
            reason = f"{reason}; resume from the cursors of the close frame"
        return {"op": "close", "code": code, "reason": reason, "subs": cursors}, reason

    def farewell(self) -> tuple[bytes, int, str]:
        """The server cuts the client off as a slow consumer (its socket took
        nothing for the write deadline; ``hubbub.frames`` ``farewell``): from
        now on nothing more is sent (Rule 4), and the server queues the final
        ``close`` frame and the close of 4008 with the resume cursor, as a
        :class:`SlowConsumer` would close it. Counted in :meth:`_clean_up`."""
        self.closing = self.cut_off = True
        close, reason = self._close_op(4008, "slow consumer", True)
        return self.frame_bytes(close), 4008, wire.fit_reason(reason)

    async def _clean_up(self) -> None:
        """End every subscription and task of the connection (it is gone)."""
        self.closing = True
        if self._auth_timer is not None:
            self._auth_timer.cancel()
        subs = list(self.subs.values())
        self.subs.clear()
        # Counted here, not where SlowConsumer is raised: a pump stuck writing
        # to a client that never reads again never gets to raise it; the
        # server's cut-off counts once, whatever buffers overflowed before it.
        slow = sum(s.sub.cut_off for s in subs)
        self.hub.metrics.ws.slow_consumers += max(slow, int(self.cut_off))
        for s in subs:
            s.sub.close()
        if self._pipeline is not None:
            await self._pipeline.close()
        tasks = [s.task for s in subs if s.task is not None]
        if self._close_task is not None:
            tasks.append(self._close_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.groups.close()
        requests = list(self.requests or ())
        for task in requests:
            task.cancel()  # each gives its request up as it unwinds
        await asyncio.gather(*requests, return_exceptions=True)
        if self._member is not None:
            await self._member.close()
        if self.hold is not None:
            self.hold.release()


class WebSocketDoor:
    """The raw ASGI endpoint of ``/v1/ws``: handshake, then a :class:`Connection`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub: Hub = scope["app"].state.hub
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            codec = wire.negotiate(scope.get("subprotocols") or [])
            if hub.draining:
                raise Unavailable("hub is shutting down")
            # None: no credentials; the connection waits for an auth op.
            principal = authenticate(hub, scope)
            client = scope.get("client")
            peer = client[0] if client else None
            hold = None if principal is None else hub.tally.hold(principal, peer)
        except HubbubError as exc:
            await _refuse(scope, send, exc)
            return
        try:
            await send({"type": "websocket.accept", "subprotocol": codec.subprotocol})
        except BaseException:
            if hold is not None:
                hold.release()
            raise
        conn = Connection(hub, codec, send, frames_sender(scope), frames_writer(scope),
                          principal, frames_gatherer(scope), hold, peer)
        if (farewell := frames_farewell(scope)) is not None:
            farewell(conn.farewell)  # the server says it when it cuts a slow consumer off
        # A connection with no subscription has no pump to notice a drain.
        _Open.add(hub, conn)
        conn.registered = hub.connections.add(
            "ws", None if principal is None else principal.subject, remote_of(scope),
            topics=conn.topic_list, close=conn.disconnect)
        hub.metrics.ws.open += 1
        try:
            await conn.serve(receive)
        finally:
            hub.metrics.ws.open -= 1
            hub.connections.remove(conn.registered)
            _Open.discard(hub, conn)


def _flush_all(subs: list[_Sub]) -> None:
    """Flush the parked subscriptions that had news in a loop pass (Rule 6),
    their writes made together at the end (the ``hubbub.frames`` gatherer:
    every connection of a server shares it)."""
    gather = next((s.conn.gather for s in subs if s.conn is not None), contextlib.nullcontext)
    with gather():
        for s in subs:
            conn = s.conn
            if conn is not None:
                conn._flush(s)


#: Parked subscriptions with news, flushed together once the fan-out is done
#: (Rule 6): one callback per loop pass for all of them, rather than one each.
_flushes: PerPass[_Sub] = PerPass(_flush_all)


#: The last batch of messages joined into frames, and its bytes (see :func:`_joined`).
_last_joined: tuple[Message, Message, int, bool, bytes] | None = None


def _joined(msgs: list[Message], binary: bool) -> bytes:
    """The frames of ``msgs`` in one piece.

    Every subscriber of a topic is handed the same messages in a loop pass,
    so the last join is kept and reused when a batch has the same first and
    last message objects and length. That is only the same batch when it
    spans consecutive offsets of one topic: a subscription gets every message
    of a topic it follows, in order, so such a batch holds nothing else.
    """
    global _last_joined
    first, last, n = msgs[0], msgs[-1], len(msgs)
    if n == 1:
        return first.ws_msgpack_frame() if binary else first.ws_frame()
    cached = _last_joined
    if (cached is not None and cached[0] is first and cached[1] is last and cached[2] == n
            and cached[3] is binary):
        return cached[4]
    data = b"".join([m.ws_msgpack_frame() for m in msgs] if binary
                    else [m.ws_frame() for m in msgs])
    if (first.topic == last.topic and first.epoch == last.epoch
            and last.offset - first.offset == n - 1):
        _last_joined = (first, last, n, binary, data)
    return data


def _retrieve(future: asyncio.Future[list[Event]]) -> None:
    """Consume the outcome of a read nobody waits for any more (a page read ahead)."""
    if not future.cancelled():
        future.exception()


class _Open:
    """The open connections of one hub, closed with 1012 when it drains.

    One task per hub with connections waits for the drain, rather than one
    per connection (an idle connection should cost little). The entry, and
    its task, exist while the hub has open connections.
    """

    _of: dict[Hub, _Open] = {}

    def __init__(self, hub: Hub) -> None:
        self.conns: set[Connection] = set()
        self.task = asyncio.create_task(self._close_on_drain(hub), name="hubbub-ws-drain")

    async def _close_on_drain(self, hub: Hub) -> None:
        await hub.closing.wait()
        for conn in list(self.conns):
            conn.close(1012, "service restart", resume=True)

    @classmethod
    def add(cls, hub: Hub, conn: Connection) -> None:
        entry = cls._of.get(hub)
        if entry is None:
            entry = cls._of[hub] = cls(hub)
        entry.conns.add(conn)
        if hub.draining:  # it began while the handshake was answered
            conn.close(1012, "service restart", resume=True)

    @classmethod
    def discard(cls, hub: Hub, conn: Connection) -> None:
        entry = cls._of.get(hub)
        if entry is None:
            return
        entry.conns.discard(conn)
        if not entry.conns:
            entry.task.cancel()
            del cls._of[hub]


async def _refuse(scope: Scope, send: Send, exc: HubbubError) -> None:
    """Refuse the handshake with a problem document, where the server allows it.

    The ASGI "WebSocket Denial Response" extension lets the app answer the
    upgrade request with an HTTP response; without it, closing before accept
    makes the server answer 403.
    """
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": close_code(exc)})
        return
    response = problem_from(exc, instance=scope.get("path"))
    await send({
        "type": "websocket.http.response.start",
        "status": response.status_code,
        "headers": response.raw_headers,
    })
    await send({"type": "websocket.http.response.body", "body": response.body})


async def upgrade_required(request: Request) -> Response:
    """``GET /v1/ws`` as a plain HTTP request: 426, naming the protocol to
    upgrade to (RFC 9110 §15.5.22: "The server MUST send an Upgrade header
    field in a 426 response to indicate the required protocol(s)")."""
    return problem(426, "Upgrade Required", "this endpoint speaks WebSocket only",
                   code="upgrade-required",
                   headers={"Upgrade": "websocket", "Connection": "Upgrade"})


PATH = "/v1/ws"
#: The endpoint; :func:`hubbub.transports.app.create_app` also calls it directly.
door = WebSocketDoor()
routes: list[BaseRoute] = [WebSocketRoute(PATH, door), Route(PATH, upgrade_required)]
