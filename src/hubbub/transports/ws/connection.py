"""A WebSocket connection's ops: the reader, its dispatch, authentication,
publishes, subscriptions and presence (request-reply in
:mod:`hubbub.transports.ws.requests`).

:class:`Connection` reads the client's frames and carries out their ops;
what it sends goes through the :class:`~hubbub.transports.ws.delivery.Outbox`
it extends, and once it closes nothing more is read
(:mod:`hubbub.transports.ws.delivery`, invariant "closing sends only the close").

Invariants
----------
"op errors keep the connection": An op that fails with a
    :class:`~hubbub.protocol.errors.HubbubError` is answered with an ``err``
    frame and the connection carries on; nothing a peer sends ends the
    reader except by a deliberate close.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
from collections.abc import Awaitable
from typing import Any

import msgspec
from starlette.types import Receive, Send

from ...core import Hub
from ...core.auth import OPEN, Action, Principal
from ...core.connections import Conn
from ...core.hub import encode_value
from ...core.presence import Member, check_client
from ...core.tally import Hold
from ...loop.tasks import cancel_and_wait
from ...protocol import wire
from ...protocol.errors import (
    HubbubError,
    InvalidRequest,
    LimitExceeded,
    NotFound,
    Unauthorized,
)
from ...protocol.message import JSON, OCTET, media_type
from ...protocol.topics import validate_pattern, validate_topic
from ..extensions import GatherWrites, SendFrames, WriteFrames
from ..problems import close_code, ws_error
from .delivery import Outbox, Room, _Sub
from .groups import Feed, GroupFeeds
from .pipeline import Pipeline
from .requests import Requests, stored

log = logging.getLogger("hubbub")

#: Subscriptions one connection may hold at once.
MAX_SUBSCRIPTIONS = 100
#: The close code of a connection an operator disconnected (``DELETE /v1/connections/{id}``).
DISCONNECTED = 4010
#: Seconds a connection that came without credentials has to send ``auth``.
AUTH_TIMEOUT = 10.0

_json_decode = msgspec.json.Decoder().decode
_msgpack_decode = msgspec.msgpack.Decoder().decode

class Connection(Outbox):
    """One accepted WebSocket: its ops, its subscriptions, its closing state."""

    __slots__ = ("_next_sub", "_groups", "_member", "_requests", "principal", "_auth_timer",
                 "_pipeline", "hold", "peer", "registered")

    def __init__(
        self, hub: Hub, room: Room, codec: wire.Codec, send: Send,
        frames: SendFrames | None = None, write: WriteFrames | None = None,
        principal: Principal | None = OPEN, gather: GatherWrites = contextlib.nullcontext,
        hold: Hold | None = None, peer: str | None = None,
    ) -> None:
        super().__init__(hub, room, codec, send, frames, write, gather)
        self._next_sub = 1
        #: Consumer-group subscriptions, presence and waiting requests: made
        #: on first use (most connections have none of them, and an idle
        #: connection should stay small).
        self._groups: GroupFeeds | None = None
        self._member: Member | None = None
        #: Its request-reply ops, with the ``req`` ops waiting for their reply.
        self._requests: Requests | None = None
        #: Who the client is; ``None`` until its ``auth`` op (no credentials on the upgrade).
        self.principal = principal
        #: The places its principal holds for it (:mod:`hubbub.core.tally`), and
        #: the client's address they are counted by when it has no subject.
        self.hold = hold
        self.peer = peer
        self._auth_timer: asyncio.TimerHandle | None = None
        #: The ops in flight, answered in order (:mod:`hubbub.transports.ws.pipeline`);
        #: made on first use (a subscriber that never publishes should stay small).
        self._pipeline: Pipeline | None = None
        #: Its entry in the cluster's list of connections (:mod:`hubbub.core.connections`).
        self.registered: Conn | None = None
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
                    # Past a deliberate close, frames are dropped
                    # (:mod:`hubbub.transports.ws.delivery`, invariant
                    # "closing sends only the close").
                    continue
                text = event.get("text")
                frame = text if text is not None else event.get("bytes") or b""
                # Nothing read is kept while the next frame is awaited (an
                # idle connection should cost little).
                del event, text
                await self.receive_frame(frame)
                del frame
        finally:
            await self._clean_up()

    async def receive_frame(self, frame: str | bytes) -> None:
        """Decode one frame and carry out its op (invariant "op errors keep the connection").

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
                # :mod:`hubbub.transports.ws.pipeline`, invariant "barrier before other ops"
                await self._pipeline.drain()
            answer = await self.answered(op.id, self._alone(op))
            if answer is not None:
                await self.send_obj(answer)
            return
        pipeline = self.pipeline
        match op:
            case wire.Pub():
                pipeline.start(self.answered(op.id, self._pub(op, pipeline.lane)),
                               f"hubbub-ws-pub-{op.id}")
            case wire.Req():
                self.requests.ask(op)
            case wire.Reply():
                before, lane = pipeline.hold_lane()
                pipeline.start(self.answered(op.id, self.requests.reply(op, before, lane)),
                               f"hubbub-ws-reply-{op.id}")
            case wire.Ack() | wire.Nack() | wire.Extend():
                pipeline.start(self.answered(op.id, self.groups.settle(op)),
                               f"hubbub-ws-settle-{op.id}")
        await pipeline.room()

    @property
    def pipeline(self) -> Pipeline:
        """The connection's ops in flight (:mod:`hubbub.transports.ws.pipeline`)."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self._send_answers)
        return self._pipeline

    async def _alone(self, op: wire.Sub | wire.Unsub | wire.Ping | wire.Auth) -> None:
        """Carry out an op that is not pipelined; it sends its own answer."""
        match op:
            case wire.Sub():
                await self._sub(op)
                self.hub.connections.changed(self.registered)  # the admin list shows them
            case wire.Unsub():
                await self._unsub(op)
                self.hub.connections.changed(self.registered)
            case wire.Ping():
                await self.send_obj({"op": "pong", "id": op.id})
            case wire.Auth():
                await self._auth(op)

    async def answered(self, op_id: int | str | None, work: Awaitable[Any]) -> Any:
        """What ``work`` answers, or the ``err`` for its error (invariant "op errors keep the
        connection"); ``None``
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
            self.hub.connections.changed(self.registered)
        await self.send_obj({"op": "ok", "id": op.id, **principal.to_dict()})

    def check(self, action: Action, topic: str, field: str, *, concrete: bool = False) -> None:
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
        self.check(Action.PUBLISH, op.topic, "topic", concrete=True)
        data, content_type = self.payload(op)
        if lane is not None:
            await lane  # no wait at all once it is done
        result = await self.hub.publish(op.topic, data, content_type, op.key,
                                        owner=self.principal.subject if self.principal else None,
                                        limit_topics=True)
        reply = stored(op.id, result.message)
        if result.duplicate:
            reply["duplicate"] = True
        return reply

    def payload(self, op: wire.Pub | wire.Req | wire.Reply) -> tuple[bytes, str]:
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
    def requests(self) -> Requests:
        """The connection's request-reply ops (:mod:`hubbub.transports.ws.requests`)."""
        if self._requests is None:
            self._requests = Requests(self, self._loop)
        return self._requests

    @property
    def groups(self) -> GroupFeeds:
        """Consumer-group subscriptions (``sub`` with ``group``), apart from
        ``subs``: they have no cursor, the group keeps their position."""
        if self._groups is None:
            self._groups = GroupFeeds(self)
        return self._groups

    @property
    def _feeds(self) -> dict[int, Feed]:
        """The group subscriptions, without making :attr:`groups`."""
        return {} if self._groups is None else self._groups.feeds

    @property
    def member(self) -> Member:
        """The connection's presence (:mod:`hubbub.core.presence`)."""
        if self._member is None:
            self._member = self.hub.presence.member(
                None if self.registered is None else self.registered.id)
        return self._member

    async def _sub(self, op: wire.Sub) -> None:
        """Subscribe, holding one more of the principal's subscriptions."""
        hold = self.hold
        if hold is None:
            await self._subscribe(op)
            return
        hold.subscribe()
        held = len(self.subs) + len(self._feeds)
        try:
            await self._subscribe(op)
        except BaseException:
            if len(self.subs) + len(self._feeds) == held:
                hold.unsubscribe()
            raise

    async def _subscribe(self, op: wire.Sub) -> None:
        if len(self.subs) + len(self._feeds) >= MAX_SUBSCRIPTIONS:
            raise InvalidRequest(
                f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection", field="topics")
        for i, pattern in enumerate(op.topics):  # a group's, too: consuming is reading
            self.check(Action.SUBSCRIBE, pattern, f"topics[{i}]")
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
            self.parks(s)
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
        feeds = self._feeds
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

    def topic_list(self) -> list[str]:
        """The patterns of its subscriptions, group ones too (for the connection list)."""
        out = [p for s in self.subs.values() for p in s.sub.topics.patterns]
        out += [p for f in self._feeds.values() for p in f.patterns]
        return sorted(set(out))

    def disconnect(self, reason: str) -> None:
        """An operator disconnects it (:mod:`hubbub.core.connections`): close 4010."""
        self.close(DISCONNECTED, reason, resume=True)
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
        if self._groups is not None:
            await self._groups.close()
        if self._requests is not None:
            await self._requests.close()
        if self._member is not None:
            await self._member.close()
        if self.hold is not None:
            self.hold.release()
