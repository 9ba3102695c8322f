"""The WebSocket door: ``GET /v1/ws`` (RFC 6455), ops in JSON or MessagePack frames.

The protocol is in ``docs/websocket.md``; frames are decoded by the pure
:mod:`hubbub.wire`. This module is the raw ASGI endpoint around it: the
handshake, one reader, one pump task per subscription, and closing.

Theory of operation
-------------------
The endpoint's own task reads frames and carries out ops one at a time, in
order, so replies come in the order of the ops and a client's publishes are
stored in the order it sent them. Each subscription gets a *pump* task that
drains :meth:`Subscription.next_batch` and writes its messages.

Rule 1. Every frame goes out under one lock, so frames never interleave and a
        pump sends a whole batch per lock. Message frames are the bytes cached
        on the :class:`~hubbub.message.Message` (``ws_json()`` or
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
Rule 5. An op that fails with a :class:`~hubbub.errors.HubbubError` is answered
        with an ``err`` frame and the connection carries on; nothing a peer
        sends ends the reader except by a deliberate close.

Consumer-group subscriptions (``sub`` with ``group``) and their ``ack``,
``nack`` and ``extend`` ops are carried out by
:class:`hubbub.transports.groups.GroupFeeds`, one per connection: a pump per
group subscription pulls while its window has room and sends under the same
lock (Rules 1 and 4 hold for them too); when the connection ends, what it did
not settle is nacked so that other workers get it at once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.routing import BaseRoute, WebSocketRoute
from starlette.types import Message as ASGIMessage
from starlette.types import Receive, Scope, Send

from .. import wire
from ..core import Hub, Subscription
from ..core.hub import encode_value
from ..core.subscription import PAGE
from ..errors import (
    HubbubError,
    InvalidRequest,
    NotFound,
    SlowConsumer,
    Unavailable,
)
from ..message import JSON, OCTET, Message, media_type
from ..topics import validate_pattern
from .groups import GroupFeeds
from .problems import close_code, problem_from, ws_error

log = logging.getLogger("hubbub")

#: Subscriptions one connection may hold at once.
MAX_SUBSCRIPTIONS = 100

_json_decode = msgspec.json.Decoder().decode
_msgpack_decode = msgspec.msgpack.Decoder().decode


@dataclass(eq=False, slots=True)
class _Sub:
    """One subscription of a connection and the cursor of what was sent of it."""

    id: int
    sub: Subscription
    cursor: str
    task: asyncio.Task[None] | None = None


class Connection:
    """One accepted WebSocket: its subscriptions, its send lock, its closing state."""

    def __init__(self, hub: Hub, codec: wire.Codec, send: Send) -> None:
        self.hub = hub
        self.codec = codec
        self.subs: dict[int, _Sub] = {}
        self.closing = False
        self._send = send
        self._binary = codec.binary
        self._lock = asyncio.Lock()
        self._next_sub = 1
        self._close_task: asyncio.Task[None] | None = None
        #: Consumer-group subscriptions (``sub`` with ``group``), apart from
        #: ``subs``: they have no cursor, the group keeps their position.
        self.groups = GroupFeeds(self)

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
        """Decode one frame and carry out its op (Rule 5)."""
        op_id: int | str | None = None
        try:
            op = self.codec.decode(frame)
            if isinstance(op, wire.Refusal):
                if op.op_id is None:
                    self.close(close_code(op.error), op.error.message)
                else:
                    await self.send_obj(ws_error(op.error, op.op_id))
                return
            op_id = op.id
            match op:
                case wire.Pub():
                    await self._pub(op)
                case wire.Sub():
                    await self._sub(op)
                case wire.Unsub():
                    await self._unsub(op)
                case wire.Ping():
                    await self.send_obj({"op": "pong", "id": op.id})
                case wire.Ack() | wire.Nack() | wire.Extend():
                    await self.send_obj(await self.groups.settle(op))
        except HubbubError as exc:
            await self.send_obj(ws_error(exc, op_id))
        except OSError:
            pass  # the client is gone; the next receive() says so
        except Exception:
            log.exception("websocket frame failed (op id %r)", op_id)
            self.close(1011, "internal error")

    # -- ops ----------------------------------------------------------------------

    async def _pub(self, op: wire.Pub) -> None:
        data, content_type = self._payload(op)
        result = await self.hub.publish(op.topic, data, content_type, op.key)
        m = result.message
        reply: dict[str, Any] = {
            "op": "ok", "id": op.id, "topic": m.topic, "offset": m.offset,
            "cursor": m.cursor, "time": m.time, "msg_id": m.id,
        }
        if result.duplicate:
            reply["duplicate"] = True
        await self.send_obj(reply)

    def _payload(self, op: wire.Pub) -> tuple[bytes, str]:
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

    async def _sub(self, op: wire.Sub) -> None:
        if len(self.subs) + len(self.groups.feeds) >= MAX_SUBSCRIPTIONS:
            raise InvalidRequest(
                f"at most {MAX_SUBSCRIPTIONS} subscriptions per connection", field="topics")
        if op.group is not None:
            await self.groups.subscribe(op, self._next_sub)
            self._next_sub += 1
            return
        for name in ("window", "lease", "start"):
            if getattr(op, name) is not None:
                raise InvalidRequest(f"{name} applies to group subscriptions only", field=name)
        for i, pattern in enumerate(op.topics):
            validate_pattern(pattern, field=f"topics[{i}]")
        try:
            sub = await self.hub.subscribe(op.topics, op.after)
        except HubbubError as exc:
            if exc.field == "topic":
                exc.field = "topics"
            raise
        s = _Sub(self._next_sub, sub, sub.cursor)
        self._next_sub += 1
        self.subs[s.id] = s  # from here on _clean_up() closes it, whatever happens
        # The reply goes out before the pump starts: "ok" precedes every msg of it.
        await self.send_obj({"op": "ok", "id": op.id, "sub": s.id, "cursor": s.cursor})
        s.task = asyncio.create_task(self._pump(s), name=f"hubbub-ws-sub-{s.id}")

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
        cursors: dict[str, str | None] = {}
        for i in sorted(ended):
            if i in feeds:
                await self.groups.stop(feeds[i])
                cursors[str(i)] = None  # a group keeps its own position
                continue
            s = self.subs.pop(i)
            await self._stop(s)
            cursors[str(i)] = s.cursor
        # After this reply no msg frame of these subscriptions follows: the pumps are done.
        await self.send_obj({"op": "ok", "id": op.id, "subs": cursors})

    async def _stop(self, s: _Sub) -> None:
        s.sub.close()
        if s.task is not None:
            s.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await s.task

    # -- writing ------------------------------------------------------------------

    def frame(self, obj: Any) -> ASGIMessage:
        """The ASGI send event of one server frame."""
        data = self.codec.encode(obj)
        if self._binary:
            return {"type": "websocket.send", "bytes": data}
        return {"type": "websocket.send", "text": data.decode()}

    async def send_obj(self, obj: Any) -> None:
        """Send one server frame, unless the connection is closing (Rule 4)."""
        event = self.frame(obj)
        async with self._lock:
            if not self.closing:
                await self._send(event)

    async def send_many(self, events: list[ASGIMessage]) -> None:
        """Send frames in one go, stopping if the connection starts closing (Rule 4)."""
        async with self._lock:
            for event in events:
                if self.closing:
                    return
                await self._send(event)

    async def _pump(self, s: _Sub) -> None:
        """Write a subscription's events until it ends (Rules 1 to 3)."""
        sub, send, binary = s.sub, self._send, self._binary
        try:
            while True:
                batch = await sub.next_batch(PAGE)
                if not batch:
                    # Closed: by an unsub (which also cancels us) or by a draining hub.
                    if self.hub.draining:
                        self.close(1012, "service restart", resume=True)
                    return
                async with self._lock:
                    for event in batch:
                        if self.closing:
                            return
                        if isinstance(event, Message):
                            if binary:
                                await send({"type": "websocket.send", "bytes": event.ws_msgpack()})
                            else:
                                text = event.ws_text()
                                await send({"type": "websocket.send", "text": text})
                            s.cursor = event.cursor
                        else:
                            await send(self.frame({"op": "gap", "sub": s.id, **event.to_dict()}))
        except SlowConsumer:
            self.close(4008, "slow consumer", resume=True)
        except HubbubError as exc:  # the store failed mid-read (Unavailable: 1013)
            self.close(close_code(exc), exc.code, resume=True)
        except OSError:
            pass  # the client is gone; serve() sees the disconnect
        except Exception:
            log.exception("websocket subscription pump failed")
            self.close(1011, "internal error")

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
            cursors = {str(i): s.cursor for i, s in self.subs.items()}
            if resume and len(cursors) == 1:
                reason = f"{reason}; resume from {next(iter(cursors.values()))}"
            elif resume and cursors:
                reason = f"{reason}; resume from the cursors of the close frame"
            with contextlib.suppress(OSError):
                await self._send(self.frame(
                    {"op": "close", "code": code, "reason": reason, "subs": cursors}))
                await self._send(
                    {"type": "websocket.close", "code": code, "reason": wire.fit_reason(reason)})

    async def _clean_up(self) -> None:
        """End every subscription and task of the connection (it is gone)."""
        self.closing = True
        subs = list(self.subs.values())
        self.subs.clear()
        for s in subs:
            s.sub.close()
        tasks = [s.task for s in subs if s.task is not None]
        if self._close_task is not None:
            tasks.append(self._close_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.groups.close()


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
        except HubbubError as exc:
            await _refuse(scope, send, exc)
            return
        await send({"type": "websocket.accept", "subprotocol": codec.subprotocol})
        conn = Connection(hub, codec, send)
        # A connection with no subscription has no pump to notice a drain.
        watcher = asyncio.create_task(_close_on_drain(hub, conn))
        try:
            await conn.serve(receive)
        finally:
            watcher.cancel()


async def _close_on_drain(hub: Hub, conn: Connection) -> None:
    await hub.closing.wait()
    conn.close(1012, "service restart", resume=True)


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


routes: list[BaseRoute] = [WebSocketRoute("/v1/ws", WebSocketDoor())]
