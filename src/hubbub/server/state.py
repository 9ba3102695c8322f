"""What every connection of one server shares: the app, the settings, the
connection count, the counters and one timer for them all.

:class:`ServerState` is the small API the protocols of ``hubbub serve``
(:mod:`hubbub.server.http1`, :mod:`hubbub.server.websocket`, and the HTTP/2
protocol of :mod:`hubbub.server.http2` where present) are built on:

* ``state.app``, ``state.settings``, ``state.loop``;
* ``state.connections``: the open connections (each protocol adds itself in
  ``connection_made`` and removes itself in ``connection_lost``);
* ``state.timer``: one :class:`Timer` for every connection's deadline
  (request head, body, keep-alive, WebSocket ping and close), so an idle
  connection costs no timer handle of its own;
* ``state.watch(conn)``: a connection whose socket holds unsent bytes is
  checked on each tick; one that took none of them for
  ``settings.write_deadline`` seconds is a slow consumer and its
  ``cut_off()`` is called;
* ``state.counts``: what the server counts (shown in ``/metrics``).

Trade-off: deadlines are kept in buckets of :data:`TICK` seconds and one
timer handle walks them, so a deadline fires up to one tick late. A timeout
of the server is seconds long; a tick is a tenth of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass
from email.utils import formatdate
from typing import Any, Protocol

from ..loop.passes import PerPass
from .settings import ServerSettings
from .writes import WriteHelper, write_all

#: Seconds between two runs of the shared timer.
TICK = 0.1


class Timed(Protocol):
    """A connection with deadlines, as :class:`Timer` sees it."""

    #: The loop time of the connection's next deadline, or ``None``.
    deadline: float | None
    #: The bucket the timer filed it in (the timer's own bookkeeping).
    timer_key: int | None

    def expired(self) -> None:
        """The deadline passed: the connection does what it was waiting for."""


class Writer(Protocol):
    """A connection whose socket's progress the write deadline checks."""

    def bytes_taken(self) -> int:
        """Bytes written so far that the transport has handed to the kernel."""

    def cut_off(self) -> None:
        """The socket took nothing for the write deadline: end the connection now."""


@dataclass
class Counts:
    """What the server counts, since it started."""

    #: Connections refused with 503 (``max_connections``).
    refused: int = 0
    #: Connections closed because a timeout of the request head, body or
    #: keep-alive passed.
    timed_out: int = 0
    #: Slow consumers cut off by the write deadline.
    slow_cut_off: int = 0
    #: Responses written whole through ``hubbub.respond`` ...
    whole_responses: int = 0
    #: ... of which in a crowd by ``respond_all``.
    crowd_responses: int = 0
    #: Frames written through ``hubbub.frames`` (calls of send or write).
    frame_writes: int = 0


class Timer:
    """Every connection's deadline on one timer handle (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_tick: Callable[[float], None]) -> None:
        self.loop = loop
        self.buckets: dict[int, set[Timed]] = {}
        self._on_tick = on_tick
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        if self._handle is None:
            self._handle = self.loop.call_later(TICK, self._fire)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def set(self, conn: Timed, delay: float | None) -> None:
        """Call ``conn.expired()`` in ``delay`` seconds (replacing its deadline);
        ``None`` cancels it."""
        if delay is None:
            self._remove(conn)
            conn.deadline = None
            return
        when = self.loop.time() + delay
        key = math.ceil(when / TICK)
        conn.deadline = when
        if key != conn.timer_key:  # else filed in that bucket already (a body's chunks)
            self._remove(conn)
            conn.timer_key = key
            self.buckets.setdefault(key, set()).add(conn)

    def _remove(self, conn: Timed) -> None:
        key = conn.timer_key
        if key is not None:
            conn.timer_key = None
            bucket = self.buckets.get(key)
            if bucket is not None:
                bucket.discard(conn)
                if not bucket:
                    del self.buckets[key]

    def _fire(self) -> None:
        self._handle = self.loop.call_later(TICK, self._fire)
        now = self.loop.time()
        due = math.floor(now / TICK)
        for key in sorted(k for k in self.buckets if k <= due):
            for conn in self.buckets.pop(key):
                conn.timer_key = None
                if conn.deadline is not None:
                    conn.deadline = None
                    conn.expired()
        self._on_tick(now)


def reset(transport: Any) -> None:
    """Abort ``transport`` with a TCP reset (``SO_LINGER`` of 0): the kernel drops
    what it still holds for a peer that takes nothing, rather than keeping it
    (and the socket) for minutes, and the peer learns at once that it is gone."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _complete(done: list[Any]) -> None:
    for request in done:
        request.conn.response_done(request)


class ServerState:
    """The per-server state every protocol of ``hubbub serve`` shares."""

    def __init__(self, app: Any, settings: ServerSettings,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.app = app
        self.settings = settings
        self.loop = loop or asyncio.get_running_loop()
        #: Open connections (protocol objects).
        self.connections: set[Any] = set()
        self.counts = Counts()
        self.timer = Timer(self.loop, self._check_writers)
        #: Set when the server shuts down: connections close once idle.
        self.closing = False
        #: The app's running tasks (one per request or WebSocket), so a
        #: shutdown can wait for them and cancel what is left.
        self.tasks: set[asyncio.Task[None]] = set()
        #: ``tasks.discard``, bound once: a WebSocket's task keeps its done
        #: callback for the connection's life.
        self._forget_task = self.tasks.discard
        #: The local addresses connections came to (:meth:`listening`).
        self._addresses: dict[tuple[str, int], tuple[str, int]] = {}
        #: The app's lifespan state (ASGI ``scope["state"]``, copied per request).
        self.lifespan_state: dict[str, Any] = {}
        #: What follows each whole response, for every response of a loop pass
        #: at once (:mod:`hubbub.server.whole`, invariant "follow-ups after the writes").
        self.completions: PerPass[Any] = PerPass(_complete)
        #: The last whole response's inputs and bytes (:mod:`hubbub.server.whole`).
        self.last_response: tuple[int, bytes, bytes, bytes, bool, bytes] | None = None
        #: The frames held back by :meth:`gathered_writes`, by connection.
        self.gathered: dict[Any, list[bytes]] | None = None
        #: The second thread of a crowd's writes (:mod:`hubbub.server.writes`),
        #: started and stopped with the server.
        self.helper = WriteHelper()
        #: :meth:`gathered_writes`, bound once for every connection's
        #: ``hubbub.frames`` (an idle connection should cost little).
        self.gather = self.gathered_writes
        self._watched: dict[Writer, tuple[int, float]] = {}
        self._date = (0, b"")

    @contextlib.contextmanager
    def gathered_writes(self) -> Iterator[None]:
        """Hold back ``hubbub.frames`` writes until the block ends, then make them
        all at once, each connection's in order, over two threads when there are
        many (:mod:`hubbub.server.writes`). Nested blocks write at the outermost end."""
        if self.gathered is not None:
            yield
            return
        gathered: dict[Any, list[bytes]] = {}
        self.gathered = gathered
        try:
            yield
        finally:
            self.gathered = None
            if gathered:
                data = [p[0] if len(p) == 1 else b"".join(p) for p in gathered.values()]
                write_all(list(gathered), data, self.helper)

    def listening(self, address: tuple[str, int] | None) -> tuple[str, int] | None:
        """``address`` (a scope's ``server``), as one tuple for all the
        connections of one listening address: a scope is kept for a
        WebSocket's life, and the server listens on few addresses."""
        if address is None:
            return None
        shared = self._addresses.get(address)
        if shared is None:
            if len(self._addresses) >= 64:  # a wildcard address: many local ones
                return address
            shared = self._addresses[address] = address
        return shared

    def run_app(self, call: Coroutine[Any, Any, None]) -> None:
        """Run ``call`` (the app on one request or WebSocket) in a task the
        server keeps until it ends."""
        task = self.loop.create_task(call)
        self.tasks.add(task)
        task.add_done_callback(self._forget_task)

    def watch(self, conn: Writer) -> None:
        """Check ``conn``'s socket on every tick while it holds unsent bytes."""
        if conn not in self._watched:
            self._watched[conn] = (conn.bytes_taken(), self.loop.time())

    def unwatch(self, conn: Writer) -> None:
        self._watched.pop(conn, None)

    def snapshot(self) -> dict[str, int]:
        """The counts and the open connections, for ``/metrics``."""
        return {**asdict(self.counts), "connections": len(self.connections)}

    def cut_stalled(self, seconds: float) -> None:
        """Cut off every connection whose socket took nothing for ``seconds`` (a drain)."""
        self._check_writers(self.loop.time(), seconds)

    def _check_writers(self, now: float, deadline: float | None = None) -> None:
        if deadline is None:
            deadline = self.settings.write_deadline
        stalled: list[Writer] = []
        for conn, (taken, since) in list(self._watched.items()):
            now_taken = conn.bytes_taken()
            if now_taken < 0:  # nothing left unsent
                del self._watched[conn]
            elif now_taken != taken:
                self._watched[conn] = (now_taken, now)
            elif now - since >= deadline:
                del self._watched[conn]
                stalled.append(conn)
        for conn in stalled:
            self.counts.slow_cut_off += 1
            conn.cut_off()

    def date_header(self) -> bytes:
        """The ``date`` and ``server`` header lines (the date changes once a second)."""
        now = int(self.loop.time())
        if self._date[0] != now:
            self._date = (now, b"date: %s\r\nserver: hubbub\r\n"
                          % formatdate(usegmt=True).encode())
        return self._date[1]


__all__ = ["TICK", "Counts", "ServerState", "Timed", "Timer", "Writer", "reset"]
