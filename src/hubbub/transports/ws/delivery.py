"""What a WebSocket connection sends: frames, subscriptions' pumps, park and flush.

:class:`Outbox` is the sending half of a connection: its send lock and
closing state, the frames of answers, one pump per subscription, and the
flush of parked subscriptions. :class:`Room` is what the connections of one
door (:class:`~hubbub.transports.ws.door.WebSocketDoor`) share: the flush of
each loop pass and the last batch joined into frames.

Invariants
----------
"frames never interleave": Every frame goes out under one lock, so frames
    never interleave and a pump sends a whole batch per lock. Message frames
    are the bytes cached on the :class:`~hubbub.protocol.message.Message`
    (``ws_json()`` or ``ws_msgpack()``): one serialization per message for
    every subscriber.
"cursor is what was sent": A pump records the cursor of each message once
    its frame is handed to the server, so the cursor the hub hands back when
    it closes the connection is exactly what the client received: nothing
    lost, nothing twice.
"slow consumer cut off": A slow client backs up only its own pump (the
    server's ``send`` waits while the socket's buffer is full); its
    subscription's bounded buffer then overflows and cuts it off
    (:class:`~hubbub.protocol.errors.SlowConsumer`): the hub closes with 4008
    and the resume cursor. The publisher and the other subscribers never
    wait for it.
"closing sends only the close": A deliberate close sets ``closing`` first:
    from then on nothing but the final ``close`` frame (the cursor of every
    subscription) and the close frame itself is sent. A drained hub closes
    with 1012, a slow consumer with 4008, an unanswerable frame with the code
    its error maps to in :mod:`hubbub.transports.problems`, an internal error
    with 1011.

Trade-offs
----------
"park idle subscriptions": On a server with the ``hubbub.frames`` writer
    (``hubbub serve``), a live subscription with nothing to send *parks*
    instead of keeping a pump task waiting (:meth:`Subscription.park`): the
    fan-out's wake-up schedules one flush per loop pass for every connection
    of the door (:class:`Room`), which writes every ready frame in one write
    when that needs no wait (the lock is free, the socket's buffer below its
    mark). Anything else (a full socket, a busy lock, an end, an error, a
    cut-off) starts a pump again, which handles it by the invariants above
    and parks when it is done. An idle subscription then holds no task, and
    a delivery costs no task switch.
"join a batch once": Every subscriber of a topic is handed the same batch in
    a loop pass, so the :class:`Room` keeps the last batch joined into frames
    and hands the same bytes to the next subscriber (:meth:`Room.joined`).
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.types import Message as ASGIMessage
from starlette.types import Send

from ...core import Hub, Subscription
from ...core.subscription import PAGE, Event, State
from ...loop.passes import PerPass
from ...protocol import wire
from ...protocol.errors import HubbubError, SlowConsumer
from ...protocol.message import BINARY_FRAME, TEXT_FRAME, Message, ws_frame
from ..extensions import GatherWrites, SendFrames, WriteFrames
from ..problems import close_code

log = logging.getLogger("hubbub")


def _never() -> None:
    raise AssertionError("a subscription parked without a connection")


@dataclass(eq=False, slots=True)
class _Sub:
    """One subscription of a connection and the cursor of what was sent of it."""

    id: int
    sub: Subscription
    cursor: str
    task: asyncio.Task[None] | None = None
    #: The topics this subscription made the connection present on.
    present: tuple[str, ...] = ()
    #: Its connection, when idle subscriptions park there (trade-off "park idle subscriptions").
    conn: Outbox | None = None
    #: What the parked subscription calls when it has news: flush it once the
    #: fan-out is done (:meth:`Outbox.parks`), so that whatever the fan-out
    #: hands it meanwhile goes out in the same write.
    ready: Callable[[], None] = _never


class Outbox:
    """The sending half of one accepted WebSocket: its subscriptions, its send
    lock, its closing state."""

    __slots__ = ("hub", "codec", "subs", "closing", "_send", "_frames", "_binary", "_lock",
                 "_close_task", "_write", "_loop", "gather", "_room", "cut_off", "_sent")

    def __init__(
        self, hub: Hub, room: Room, codec: wire.Codec, send: Send,
        frames: SendFrames | None = None, write: WriteFrames | None = None,
        gather: GatherWrites = contextlib.nullcontext,
    ) -> None:
        self.hub = hub
        #: What it shares with the other connections of its door.
        self._room = room
        self.codec = codec
        self.subs: dict[int, _Sub] = {}
        self.closing = False
        self._send = send
        #: The server's ``hubbub.frames`` sender (:mod:`hubbub.transports.extensions`),
        #: if it has one.
        self._frames = frames
        #: Its gatherer: the writes of a pass's flush made together at its end.
        self.gather = gather
        #: Its writer (no waiting): with it, idle subscriptions park (trade-off
        #: "park idle subscriptions").
        self._write = write if frames is not None else None
        self._binary = codec.binary
        self._lock = asyncio.Lock()
        #: The loop the connection is served on, for the flush of a pass:
        #: asking for the running loop costs a getpid() system call on Python 3.11.
        self._loop = asyncio.get_running_loop()
        self._close_task: asyncio.Task[None] | None = None
        #: The server cut it off as a slow consumer (:meth:`farewell`).
        self.cut_off = False
        #: Counts what was written (the flush of every pass calls it).
        self._sent = room.sent

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
        """Send one server frame, unless the connection is closing (invariant
        "closing sends only the close"):
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
        """Send frames in one go, stopping if the connection starts closing
        (invariant "closing sends only the close")."""
        async with self._lock:
            for event in events:
                if self.closing:
                    return
                await self._send(event)

    def _start_pump(self, s: _Sub, taken: list[Event] | None = None) -> None:
        s.task = asyncio.create_task(self._pump(s, taken), name=f"hubbub-ws-sub-{s.id}")

    async def _pump(self, s: _Sub, taken: list[Event] | None = None) -> None:
        """Write a subscription's events until it ends or parks (invariants
        "frames never interleave", "cursor is what was sent" and "slow
        consumer cut off"; trade-off "park idle subscriptions").

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
                        s.task = None  # parked: _flush takes over
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
                self._sent(batch)
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

    def parks(self, s: _Sub) -> None:
        """Let ``s`` park on this connection when it is idle (trade-off "park
        idle subscriptions"): its news then has it flushed in the loop pass's
        :class:`Room` flush. The callback is made once, not at every park."""
        s.conn = self
        s.ready = functools.partial(self._room.flush_later, s, self._loop)

    def _flush(self, s: _Sub) -> None:
        """Write a parked subscription's ready events now, if that needs no
        wait; else, or for anything but events, hand it back to a pump
        (trade-off "park idle subscriptions")."""
        if self.closing or s.task is not None or self.subs.get(s.id) is not s:
            return  # closing (invariant "closing sends only the close"), a pump has it, or it ended
        write = self._write
        assert write is not None
        sub, ready, lock = s.sub, s.ready, self._lock
        try:
            while not lock.locked():
                batch = sub.take_ready(PAGE)
                if batch is None:
                    break  # an end, an error, a cut-off: the pump's to say
                if not batch:
                    if sub.park(ready):
                        return
                    continue
                data, cursor = self._frames_of(s, batch)
                if not write(data):
                    self._start_pump(s, batch)  # it waits for the socket (and counts)
                    return
                if cursor is not None:
                    s.cursor = cursor  # invariant "cursor is what was sent"
                self._sent(batch)
                if sub.park(ready):
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
            # Invariant "cursor is what was sent": every frame of the batch is handed over.
            s.cursor = cursor

    def _frames_of(self, s: _Sub, batch: list[Event]) -> tuple[bytes, str | None]:
        """A batch's frames, joined, and the cursor after its last message."""
        binary = self._binary
        first, last = batch[0], batch[-1]
        if len(batch) == 1 and type(first) is Message:  # the common case, in short
            return (first.ws_msgpack_frame() if binary else first.ws_frame()), first.cursor
        if isinstance(first, Message):
            # Gaps come before the messages of a batch: this one has none.
            msgs: list[Message] = batch  # type: ignore[assignment]
            return self._room.joined(msgs, binary), msgs[-1].cursor
        frames = []
        for event in batch:
            if isinstance(event, Message):
                frames.append(event.ws_msgpack_frame() if binary else event.ws_frame())
            else:
                frames.append(self.frame_bytes({"op": "gap", "sub": s.id, **event.to_dict()}))
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        return data, last.cursor if isinstance(last, Message) else None

    # -- closing ------------------------------------------------------------------

    def close(self, code: int, reason: str, *, resume: bool = False) -> None:
        """Close the connection deliberately (invariant "closing sends only the
        close"). Idempotent; returns at once.

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
        now on nothing more is sent (invariant "closing sends only the close"),
        and the server queues the final ``close`` frame and the close of 4008
        with the resume cursor, as a :class:`SlowConsumer` would close it.
        Counted when the connection cleans up."""
        self.closing = self.cut_off = True
        close, reason = self._close_op(4008, "slow consumer", True)
        return self.frame_bytes(close), 4008, wire.fit_reason(reason)


class Room:
    """What the WebSocket connections of one door share on the delivery path:
    the flush of the parked subscriptions that had news in a loop pass
    (trade-off "park idle subscriptions"), and the last batch of messages
    joined into frames (trade-off "join a batch once").

    One per :class:`~hubbub.transports.ws.door.WebSocketDoor`, so two
    applications in one process share nothing.
    """

    __slots__ = ("flushes", "flush_later", "sent", "_last_joined")

    def __init__(self, sent: Callable[[Sequence[Event]], None] = lambda batch: None) -> None:
        #: Parked subscriptions with news, flushed together once the fan-out is
        #: done (trade-off "park idle subscriptions"): one callback per loop
        #: pass for all of them, rather than one each.
        self.flushes: PerPass[_Sub] = PerPass(self._flush_all)
        #: ``flush_later(s, loop)``: ``s`` had news; bound once for every
        #: connection of the door (an idle connection should cost little).
        self.flush_later = self.flushes.add
        #: Counts what a connection wrote (the door's hub's
        #: :meth:`~hubbub.core.metrics.DoorCounts.sent`), bound once likewise.
        self.sent = sent
        #: The last batch of messages joined into frames, and its bytes (see
        #: :meth:`joined`).
        self._last_joined: tuple[Message, Message, int, bool, bytes] | None = None

    @staticmethod
    def _flush_all(subs: list[_Sub]) -> None:
        """Flush the parked subscriptions that had news in a loop pass,
        their writes made together at the end (the ``hubbub.frames`` gatherer:
        every connection of a server shares it)."""
        gather = next((s.conn.gather for s in subs if s.conn is not None),
                      contextlib.nullcontext)
        with gather():
            for s in subs:
                conn = s.conn
                if conn is not None:
                    conn._flush(s)

    def joined(self, msgs: list[Message], binary: bool) -> bytes:
        """The frames of ``msgs`` in one piece (trade-off "join a batch once").

        Every subscriber of a topic is handed the same messages in a loop pass,
        so the last join is kept and reused when a batch has the same first and
        last message objects and length. That is only the same batch when it
        spans consecutive offsets of one topic: a subscription gets every message
        of a topic it follows, in order, so such a batch holds nothing else.
        """
        first, last, n = msgs[0], msgs[-1], len(msgs)
        if n == 1:
            return first.ws_msgpack_frame() if binary else first.ws_frame()
        cached = self._last_joined
        if (cached is not None and cached[0] is first and cached[1] is last and cached[2] == n
                and cached[3] is binary):
            return cached[4]
        data = b"".join([m.ws_msgpack_frame() for m in msgs] if binary
                        else [m.ws_frame() for m in msgs])
        if (first.topic == last.topic and first.epoch == last.epoch
                and last.offset - first.offset == n - 1):
            self._last_joined = (first, last, n, binary, data)
        return data


def _retrieve(future: asyncio.Future[list[Event]]) -> None:
    """Consume the outcome of a read nobody waits for any more (a page read ahead)."""
    if not future.cancelled():
        future.exception()
