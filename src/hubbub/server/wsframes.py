"""uvicorn's WebSocket protocol plus one ASGI extension: pre-built frames in one write.

``hubbub serve`` (:class:`~hubbub.server.HubServer`) runs uvicorn with
:class:`FramesProtocol` as its ``ws`` protocol. Mounted in someone else's
server, the hub runs on whatever protocol that server uses, and the WebSocket
door falls back to plain ASGI sends; both paths carry the same bytes.

Theory of operation
-------------------
Through plain ASGI a server frame costs, per subscriber: a ``websocket.send``
event, the ``str`` encoded back to bytes, framing by the protocol library, and
one ``transport.write``. But the frames a server sends are unmasked (RFC 6455
§5.1), so a message's frame is the same bytes for every subscriber; the hub
builds it once (:meth:`hubbub.protocol.message.Message.ws_frame`). This protocol offers
``scope["extensions"]["hubbub.frames"] = {"send": send_frames, "write": write_frames}``,
where ``await send_frames(data)`` writes ``data``, any number of whole frames,
with one ``transport.write``, and ``write_frames(data)`` does the same at once,
or returns ``False`` (writing nothing) where ``send_frames`` would wait.

Rule 1. ``data`` must be whole, final, unmasked data frames (text or binary,
        no extension bits): the library's framing state is not involved, and
        it never holds a partial outgoing message between ASGI sends, so raw
        frames and ASGI sends can be mixed freely. Control frames (ping, pong,
        close) stay the protocol's own, written as before.
Rule 2. Backpressure is the ASGI send's: ``send_frames`` first waits while
        the transport's write buffer is above its high-water mark, so a slow
        client blocks only its own sender (and then its subscription's buffer
        overflows: the slow-consumer rule).
Rule 3. Once the connection is closing or gone (a close frame was sent or
        received, or the socket was lost) ``send_frames`` raises
        ``ClientDisconnected`` (an ``OSError``) and writes nothing, as the ASGI
        send does.
Rule 4. Inside ``with gathered_writes():`` (the WebSocket door's flush of a
        loop pass) ``write_frames`` keeps its bytes, per connection in order,
        and the block's end writes them all at once (:mod:`hubbub.server.writes`:
        over two threads when there are many). The checks of Rules 2 and 3
        are made when ``write_frames`` is called; nothing else may write to
        those connections inside the block.

Memory per connection
---------------------
A hub holds many idle connections, so what each one keeps matters (the
``idle-ws`` benchmark). uvicorn's protocol gives every connection an
``asyncio.Queue`` (four deques of about 760 bytes each, even empty) and an
``asyncio.Event`` (one more) and keeps the handshake's request and response
with their headers for the connection's life (in its own attributes and in
the websockets parser's frame). :class:`FramesProtocol` uses :class:`_Inbox`
and :class:`_Flag` instead, which allocate nothing until they hold
something, and drops the handshake objects once the response is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Coroutine, Iterator
from typing import Any

from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

from ..transports.extensions import FRAMES
from .writes import write_all

# The extension's contract (key, sender and writer types) is the doors' own:
# :mod:`hubbub.transports.extensions`.


class _Inbox:
    """What uvicorn's protocol uses of an ``asyncio.Queue``: ``put_nowait``,
    ``get`` and ``empty``, for the events of one connection (unbounded, FIFO).
    ``get`` also resumes reading the socket, as uvicorn's ``receive`` does.

    A connection's inbox holds at most a message or two (uvicorn stops reading
    the socket while one is waiting), so a list is enough, and waiting getters
    are kept only while there are some.
    """

    __slots__ = ("_items", "_getters", "_proto")

    def __init__(self, proto: WebSocketsSansIOProtocol) -> None:
        self._items: list[Any] = []
        self._getters: list[asyncio.Future[None]] | None = None
        self._proto = proto

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        getters = self._getters
        while getters:
            fut = getters.pop(0)
            if not fut.done():
                fut.set_result(None)
                return

    async def get(self) -> Any:
        while not self._items:
            fut = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                # Woken but cancelled before taking the item: pass the turn on.
                with contextlib.suppress(ValueError):
                    self._getters.remove(fut)
                if self._items:
                    self._wake_one()
                raise
            if not self._getters:
                self._getters = None
        item = self._items.pop(0)
        proto = self._proto
        if proto.read_paused and not self._items:
            # What uvicorn's receive() does after its get(): read on.
            proto.read_paused = False
            proto.transport.resume_reading()
        return item


class _Pings:
    """The keepalive pings of every :class:`FramesProtocol` on one loop, on one timer.

    uvicorn gives each connection a timer of its own (about 600 bytes: the
    handle, a copy of the context, a bound method). Here a connection waits
    in a bucket of :data:`TICK` seconds and one timer walks the buckets, so
    a ping goes out up to one tick late. The instance exists while some
    connection of its loop waits for a ping.
    """

    TICK = 0.25
    _of: dict[asyncio.AbstractEventLoop, _Pings] = {}

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.bucket_of: dict[FramesProtocol, int] = {}
        self.buckets: dict[int, list[FramesProtocol]] = {}
        self.timer: asyncio.TimerHandle | None = None

    @classmethod
    def add(cls, proto: FramesProtocol, delay: float) -> None:
        """Ping ``proto`` in ``delay`` seconds (replacing a ping it waits for)."""
        pings = cls._of.get(proto.loop)
        if pings is None:
            pings = cls._of[proto.loop] = cls(proto.loop)
        pings._remove(proto)
        key = math.ceil((proto.loop.time() + delay) / cls.TICK)
        pings.bucket_of[proto] = key
        pings.buckets.setdefault(key, []).append(proto)
        if pings.timer is None or key * cls.TICK < pings.timer.when():
            pings._arm()

    @classmethod
    def discard(cls, proto: FramesProtocol) -> None:
        """Ping ``proto`` no more."""
        pings = cls._of.get(proto.loop)
        if pings is not None:
            pings._remove(proto)
            if not pings.bucket_of:
                pings._close()

    def _remove(self, proto: FramesProtocol) -> None:
        key = self.bucket_of.pop(proto, None)
        if key is not None:
            bucket = self.buckets[key]
            bucket.remove(proto)
            if not bucket:
                del self.buckets[key]

    def _close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self._of.get(self.loop) is self:
            del self._of[self.loop]

    def _arm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(min(self.buckets) * self.TICK, self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time() / self.TICK
        for key in sorted(k for k in self.buckets if k <= now):
            for proto in self.buckets.pop(key):
                del self.bucket_of[proto]
                try:
                    proto.send_keepalive_ping()
                except Exception:  # pragma: no cover - uvicorn's own method
                    proto.logger.exception("keepalive ping failed")
        if self.buckets:
            self._arm()
        elif not self.bucket_of:
            self._close()


class _Flag:
    """What uvicorn's protocol uses of an ``asyncio.Event`` (``writable``):
    ``is_set``, ``set``, ``clear`` and ``wait``, with no deque until a wait."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        fut = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(fut)
        try:
            await fut
        finally:
            if self._waiters is not None:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)


class FramesProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol offering the ``hubbub.frames`` extension."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Lighter stand-ins for uvicorn's Queue and Event (see the module docstring).
        self.queue = _Inbox(self)  # type: ignore[assignment]
        self.writable = _Flag()  # type: ignore[assignment]
        self.writable.set()

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The scope has what the app needs of the request (uvicorn keeps it
        # only for this call).
        self.__dict__.pop("request", None)
        # uvicorn builds the scope (and schedules the app) only for an upgrade
        # it accepts; the app's task has not run yet, so adding to it is safe.
        scope = getattr(self, "scope", None)
        if scope is not None and self.response.status_code == 101:
            scope["extensions"][FRAMES] = {"send": self.send_frames, "write": self.write_frames,
                                           "gather": gathered_writes}

    def receive(self) -> Coroutine[Any, Any, ASGIReceiveEvent]:
        # uvicorn's receive() is a coroutine around queue.get(); returning the
        # inbox's own saves a coroutine frame per waiting connection.
        return self.queue.get()

    def schedule_ping(self) -> None:
        assert self.ping_interval is not None
        _Pings.add(self, max(0.0, self.ping_interval - self.last_ping_rtt))

    def stop_keepalive(self) -> None:
        _Pings.discard(self)
        super().stop_keepalive()

    def start_keepalive(self) -> None:
        # uvicorn calls this once, right after writing the accepting response:
        # the response (and its headers) has served its purpose.
        self.__dict__.pop("response", None)
        _forget_request(self.conn)
        super().start_keepalive()

    async def send_frames(self, data: bytes) -> None:
        """Write ``data`` (whole server frames) in one write (Rules 1 to 3)."""
        if not self.writable.is_set():
            await self.writable.wait()
        if self.disconnected or self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        if not self.handshake_complete or self.initial_response is not None:
            raise RuntimeError("hubbub.frames before the WebSocket was accepted")
        self.transport.write(data)

    def write_frames(self, data: bytes) -> bool:
        """Write ``data`` now, unless the transport's buffer is above its
        high-water mark: then write nothing and return ``False`` (use
        :meth:`send_frames`, which waits). Rules 1 and 3 as for it."""
        if not self.writable.is_set():
            return False
        if self.disconnected or self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        if not self.handshake_complete or self.initial_response is not None:
            raise RuntimeError("hubbub.frames before the WebSocket was accepted")
        gathered = _gathered
        if gathered is None:
            self.transport.write(data)
        else:  # Rule 4
            parts = gathered.get(self.transport)
            if parts is None:
                gathered[self.transport] = [data]
            elif sum(map(len, parts)) >= GATHER_LIMIT:
                return False  # as a full buffer would: wait (after the block's writes)
            else:
                parts.append(data)
        return True


#: The most bytes held back for one connection in a :func:`gathered_writes`
#: block; past it ``write_frames`` answers as it does to a full buffer (Rule 2).
GATHER_LIMIT = 256 * 1024


#: The writes of ``write_frames`` held back by :func:`gathered_writes`, by transport.
_gathered: dict[Any, list[bytes]] | None = None


@contextlib.contextmanager
def gathered_writes() -> Iterator[None]:
    """Hold back ``write_frames``' writes until the block ends, then make them
    all at once (Rule 4). Nested blocks write at the outermost one's end."""
    global _gathered
    if _gathered is not None:
        yield
        return
    gathered: dict[Any, list[bytes]] = {}
    _gathered = gathered
    try:
        yield
    finally:
        _gathered = None
        if gathered:
            write_all(list(gathered),
                      [p[0] if len(p) == 1 else b"".join(p) for p in gathered.values()])


def _forget_request(conn: ServerProtocol) -> None:
    """Let go of the handshake request that ``conn``'s parser still holds.

    websockets' server parser is a generator that parses the request, then
    ``yield from`` the frame parser: its frame keeps the request (and its
    headers) for the connection's life. Between frames the frame parser only
    waits, at the top of its loop, for data (``StreamReader.at_eof``); there
    a fresh frame parser is the same state, since everything else it uses
    is on the protocol object. Anywhere else (a client sent data early) the
    parser is kept as it is.
    """
    outer = conn.parser
    inner = getattr(outer, "gi_yieldfrom", None)
    waiting = getattr(inner, "gi_yieldfrom", None)
    if (getattr(waiting, "gi_code", None) is _AT_EOF
            and getattr(inner, "gi_code", None) is _FRAME_PARSE
            and not conn.reader.buffer):
        parser = Protocol.parse(conn)
        next(parser)  # start it, as websockets does: it waits for data
        conn.parser = parser
        outer.close()


_AT_EOF = StreamReader.at_eof.__code__
_FRAME_PARSE = Protocol.parse.__code__


__all__ = ["FramesProtocol", "gathered_writes"]
