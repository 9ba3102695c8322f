"""WebSocket connections (RFC 6455) after an HTTP/1.1 upgrade, with the
``hubbub.frames`` extension (:mod:`hubbub.transports.extensions`).

Theory of operation
-------------------
:func:`upgrade` checks the opening handshake (§4.2.1) and hands the socket
from the :class:`~hubbub.server.http1.HttpProtocol` to a
:class:`WebSocketProtocol`, which runs the app's ``websocket`` scope. The
handshake's answer is the app's: ``websocket.accept`` writes 101,
``websocket.close`` before it 403, and the denial extension
(``websocket.http.response``) any response. Frames are read by the pure
:class:`~hubbub.server.rfc6455.FrameReader`.

Through plain ASGI a server frame costs, per subscriber, a ``websocket.send``
event and framing. But the frames a server sends are unmasked (§5.1), so a
message's frame is the same bytes for every subscriber; the hub builds it
once. ``hubbub.frames`` writes such pre-built frames.

Invariants
----------
"handshake errors answered first": Handshake errors answer before any app
    runs: a wrong ``Sec-WebSocket-Version`` 426 with
    ``Sec-WebSocket-Version: 13`` (§4.4), anything else wrong 400 with the reason.
"control frames stay ours": Frames the app hands to ``hubbub.frames`` are
    whole, final, unmasked data frames: control frames (ping, pong, close)
    stay this module's.
"nothing sent after close": Once a close frame was sent or received, or the
    socket is gone, ``send`` (ASGI or frames) raises
    :class:`ClientDisconnected` (an ``OSError``) and writes nothing.
"a close is echoed": A close from the client is echoed with its code
    (§5.5.1), the app gets ``websocket.disconnect`` with it, and the socket
    closes. A frame that breaks the protocol is answered with a close of the
    code :mod:`hubbub.server.rfc6455` picks, and the socket closes.
"a pong or the end": Keepalive: a ping after ``ws_ping_interval`` seconds,
    and the connection ends (1011) if its pong takes more than
    ``ws_ping_timeout``. Every deadline is on the server's one timer (an idle
    connection holds no timer handle), and a closing handshake has
    ``ws_ping_timeout`` too.
"slow consumer cut off": A socket that takes nothing of its queued bytes for
    ``write_deadline`` seconds (a client that stopped reading) is cut off at
    once, never waited for: the app's farewell (``hubbub.frames``, see
    :mod:`hubbub.transports.extensions`) and our close frame of its code are
    queued after what the socket has not taken, the app gets
    ``websocket.disconnect`` with that code, the connection stops being
    counted, the socket is closed and, if it takes nothing more for
    ``cut_off_grace`` seconds, reset. Without a farewell the app gets 1006
    and the socket is reset at once.

Memory per connection: a hub holds many idle connections, so each keeps
only this object (slots), its scope and a frame reader; its inbox is a list
and it holds futures only while someone waits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

import httptools

from ..transports.extensions import FRAMES, LastFrames
from . import rfc6455
from .asgi import ASGI, problem_response, split_target, status_line, whole_response
from .state import ServerState, Writer, reset
from .writes import socket_fd


class Upgrading(Writer, Protocol):
    """What an upgrade uses of the HTTP/1.1 connection it takes over
    (:class:`hubbub.server.http1.HttpProtocol`, which imports this module)."""

    @property
    def state(self) -> ServerState: ...

    @property
    def transport(self) -> Any: ...

    @property
    def parser(self) -> httptools.HttpRequestParser: ...

    @property
    def scheme(self) -> str: ...

    @property
    def server(self) -> tuple[str, int] | None: ...

    @property
    def client(self) -> tuple[str, int] | None: ...

    @property
    def written(self) -> int: ...

    @property
    def fd(self) -> int: ...

    def write(self, data: bytes) -> None: ...

    def refuse(self, status: int, detail: str, code: str, extra: bytes = b"") -> None: ...

    def linger(self) -> None: ...

log = logging.getLogger("hubbub.server")

CONNECTING, OPEN, CLOSING, CLOSED = range(4)
#: Messages held for the app before reading pauses.
INBOX_HIGH = 16
#: The ``websocket.http.response`` extension's value: it has no options, so
#: every connection shares one read-only empty mapping.
NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})


class ClientDisconnected(OSError):
    """The WebSocket is closing or gone: nothing more can be sent (invariant "nothing sent after close")."""


def header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    """The values of header ``name`` (lower case), joined by commas, or ``None``."""
    values = [v.decode("latin-1") for n, v in headers if n == name]
    return ", ".join(values) if values else None


def tokens(value: str | None) -> set[str]:
    """The comma-separated tokens of a header value, lower case."""
    return {t.strip().lower() for t in (value or "").split(",") if t.strip()}


def upgrade(http: Upgrading, headers: list[tuple[bytes, bytes]], target: bytes,
            rest: bytes) -> None:
    """Check the opening handshake of ``http``'s request (invariant "handshake errors answered first") and hand its
    socket to a :class:`WebSocketProtocol`; ``rest`` is what followed the head."""
    state = http.state
    defaults = state.date_header()
    if "websocket" not in tokens(header(headers, b"upgrade")):
        http.refuse(400, "only WebSocket upgrades are served", "invalid-request")
        return
    version = header(headers, b"sec-websocket-version")
    if version != "13":
        # RFC 6455 §4.4: "the server ... MUST ... include a |Sec-WebSocket-Version|
        # header field indicating the version(s) the server is capable of understanding".
        http.write(problem_response(426, "the WebSocket version must be 13", "invalid-request",
                                    defaults, b"sec-websocket-version: 13\r\nupgrade: websocket\r\n"))
        http.linger()
        return
    key = header(headers, b"sec-websocket-key")
    method = http.parser.get_method()
    if method != b"GET" or http.parser.get_http_version() != "1.1":
        reason = "a WebSocket handshake is a GET over HTTP/1.1"
    elif key is None or not rfc6455.valid_key(key):
        reason = "Sec-WebSocket-Key must be 16 bytes in base64"
    elif header(headers, b"host") is None:
        reason = "the handshake has no Host header"
    else:
        reason = None
    if reason is not None or key is None:
        http.refuse(400, reason or "bad handshake", "invalid-request")
        return
    path, raw_path, query = split_target(target)
    protocols = header(headers, b"sec-websocket-protocol")
    scope: dict[str, Any] = {
        "type": "websocket", "asgi": ASGI, "http_version": "1.1",
        "scheme": "wss" if http.scheme == "https" else "ws",
        "server": http.server, "client": http.client, "root_path": "", "path": path,
        "raw_path": raw_path, "query_string": query, "headers": headers,
        "subprotocols": [p.strip() for p in (protocols or "").split(",") if p.strip()],
        "state": state.lifespan_state.copy(),
    }
    ws = WebSocketProtocol(state, http.transport, scope, key, http.written, http.fd)
    state.connections.discard(http)
    state.unwatch(http)
    http.transport.set_protocol(ws)
    ws.start(rest)


class WebSocketProtocol:
    """One WebSocket connection (the module docstring's rules)."""

    __slots__ = ("state", "transport", "scope", "key", "phase", "reader", "inbox", "waiter",
                 "reading", "write_paused", "drain", "written", "deadline", "timer_key",
                 "awaiting_pong", "denial", "connected", "last", "gather_writes", "fd",
                 "__weakref__")

    def __init__(self, state: ServerState, transport: Any, scope: dict[str, Any], key: str,
                 written: int, fd: int) -> None:
        self.state = state
        self.transport = transport
        #: Its socket's number for direct writes, or -1 (:func:`hubbub.server.writes.socket_fd`).
        self.fd = fd
        self.scope = scope
        self.key = key
        self.phase = CONNECTING
        self.reader = rfc6455.FrameReader(state.settings.ws_max_size)
        self.inbox: list[dict[str, Any]] = []
        self.waiter: asyncio.Future[None] | None = None
        self.reading = True
        self.write_paused = False
        self.drain: asyncio.Future[None] | None = None
        self.written = written
        self.deadline: float | None = None
        self.timer_key: int | None = None
        self.awaiting_pong = False
        #: The denial response's ``start`` message, until its body comes.
        self.denial: dict[str, Any] | None = None
        self.connected = False
        #: What the app says to a slow consumer (``hubbub.frames`` farewell).
        self.last: LastFrames | None = None
        #: ``hubbub.frames`` ``gather_writes``: the server's, shared.
        self.gather_writes = state.gather
        # This protocol is the connection's hubbub.frames (Frames): no dict of callables.
        scope["extensions"] = {"websocket.http.response": NO_OPTIONS, FRAMES: self}

    def start(self, rest: bytes) -> None:
        self.state.connections.add(self)
        self.state.run_app(self._app())
        if rest:
            self.data_received(rest)

    async def _app(self) -> None:
        try:
            await self.state.app(self.scope, self.receive, self.send)
        except Exception:
            log.exception("the app failed on a WebSocket")
            if self.phase == CONNECTING:
                self._http(500, b"", b"")
            elif self.phase == OPEN:
                self._close(1011, "internal error")
            return
        if self.phase == CONNECTING:
            self._http(500, b"", b"")  # ASGI: no accept, no close
        elif self.phase == OPEN:
            self._close(1000, "")

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: Any) -> None:  # pragma: no cover - set_protocol
        self.transport = transport
        self.fd = socket_fd(transport)

    def data_received(self, data: bytes) -> None:
        if self.phase == CLOSED:
            return
        for event in self.reader.receive_data(data):
            if isinstance(event, rfc6455.Message):
                if isinstance(event.data, str):
                    self._deliver({"type": "websocket.receive", "text": event.data})
                else:
                    self._deliver({"type": "websocket.receive", "bytes": event.data})
            elif isinstance(event, rfc6455.Ping):
                if self.phase == OPEN:  # before the 101, a pong would break the response
                    self._write(rfc6455.frame(rfc6455.PONG, event.payload))
            elif isinstance(event, rfc6455.Pong):
                if self.awaiting_pong:
                    self.awaiting_pong = False
                    self.state.timer.set(self, self.state.settings.ws_ping_interval)
            elif isinstance(event, rfc6455.Close):
                if self.phase == OPEN:  # invariant "a close is echoed"
                    self._write(rfc6455.frame(rfc6455.CLOSE,
                                              rfc6455.close_payload(event.code)))
                self._end(event.code, event.reason)
            else:  # rfc6455.Failure
                if self.phase == OPEN:
                    self._write(rfc6455.frame(rfc6455.CLOSE,
                                              rfc6455.close_payload(event.code, event.reason)))
                self._end(event.code, event.reason)
        if len(self.inbox) >= INBOX_HIGH and self.reading:
            self.reading = False
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        state.timer.set(self, None)
        state.unwatch(self)
        self._end(1006, "")
        self.resume_writing()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain, self.drain = self.drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- the shared timer and the write deadline --------------------------------

    def expired(self) -> None:
        settings = self.state.settings
        if self.phase == OPEN and not self.awaiting_pong:
            self.awaiting_pong = True
            self._write(rfc6455.frame(rfc6455.PING, b""))
            self.state.timer.set(self, settings.ws_ping_timeout)
        elif self.phase == OPEN:  # the pong did not come (invariant "a pong or the end")
            self._close(1011, "keepalive ping timeout")
            self.state.timer.set(self, settings.ws_ping_timeout)
        elif self.phase == CLOSING:
            self.transport.abort()
        else:  # a slow consumer's grace is over
            reset(self.transport)

    def bytes_taken(self) -> int:
        left = self.transport.get_write_buffer_size()
        return -1 if not left else self.written - left

    def cut_off(self) -> None:
        """A slow consumer (invariant "slow consumer cut off"). Its last words (the app's farewell, then
        our close frame) are queued after what it has not taken yet, the
        socket is closed, and aborted if it takes nothing within
        ``cut_off_grace``; it stops being counted at once."""
        state = self.state
        log.info("cutting off a WebSocket client that read nothing for %gs",
                 state.settings.write_deadline)
        state.connections.discard(self)
        last, self.last = self.last, None
        if self.phase != OPEN or last is None:
            self._end(1006, "")
            reset(self.transport)
            return
        try:
            frames, code, reason = last()
        except Exception:
            log.exception("the app's farewell to a slow consumer failed")
            frames, code, reason = b"", 1011, "internal error"
        self._write(frames + rfc6455.frame(rfc6455.CLOSE, rfc6455.close_payload(code, reason)))
        state.unwatch(self)  # cut off once: what is left has the grace
        self._end(code, reason)
        state.timer.set(self, state.settings.cut_off_grace)

    def farewell(self, last: LastFrames | None) -> None:
        """``hubbub.frames`` ``farewell``: what :meth:`cut_off` sends first."""
        self.last = last

    # -- ASGI ------------------------------------------------------------------

    def _deliver(self, event: dict[str, Any]) -> None:
        self.inbox.append(event)
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _end(self, code: int, reason: str) -> None:
        """No more frames in or out; the app hears ``code`` (once)."""
        if self.phase == CLOSED:
            return
        self.phase = CLOSED
        self.last = None
        self.state.timer.set(self, None)
        self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
        if not self.transport.is_closing():
            self.transport.close()

    async def receive(self) -> dict[str, Any]:
        if not self.connected:
            self.connected = True
            return {"type": "websocket.connect"}
        while not self.inbox:
            self.waiter = self.state.loop.create_future()
            await self.waiter
        event = self.inbox.pop(0)
        if not self.reading and len(self.inbox) < INBOX_HIGH // 2 and self.phase != CLOSED:
            self.reading = True
            self.transport.resume_reading()
        if event["type"] == "websocket.disconnect":
            self.inbox.append(event)  # every later receive hears it too
        return event

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.phase == CONNECTING:
            if kind == "websocket.accept":
                self._accept(message)
            elif kind == "websocket.close":
                self._http(403, b"", b"")
            elif kind == "websocket.http.response.start":
                self.denial = message
            elif kind == "websocket.http.response.body" and self.denial is not None:
                headers = b"".join(b"%s: %s\r\n" % (n, v) for n, v in self.denial["headers"]
                                   if n.lower() not in (b"content-length", b"connection"))
                self._http(self.denial["status"], headers, message.get("body", b""))
            else:
                raise RuntimeError(f"unexpected ASGI message {kind} before accept")
            return
        if self.phase != OPEN:
            raise ClientDisconnected("the WebSocket is closed")
        if kind == "websocket.send":
            text = message.get("text")
            data = (rfc6455.frame(rfc6455.TEXT, text.encode()) if text is not None
                    else rfc6455.frame(rfc6455.BINARY, message.get("bytes") or b""))
            await self.send_frames(data)
        elif kind == "websocket.close":
            self._close(message.get("code", 1000), message.get("reason") or "")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind}")

    def _accept(self, message: dict[str, Any]) -> None:
        lines = [status_line(101), b"upgrade: websocket\r\nconnection: Upgrade\r\n",
                 b"sec-websocket-accept: %s\r\n" % rfc6455.accept_key(self.key).encode()]
        self.key = ""  # answered: not kept for the connection's life
        subprotocol = message.get("subprotocol")
        if subprotocol:
            lines.append(b"sec-websocket-protocol: %s\r\n" % subprotocol.encode())
        for name, value in message.get("headers") or ():
            lines.append(b"%s: %s\r\n" % (name, value))
        lines.append(b"\r\n")
        self._write(b"".join(lines))
        self.phase = OPEN
        # The handshake's headers have served their purpose.
        self.state.timer.set(self, self.state.settings.ws_ping_interval)

    def _http(self, status: int, headers: bytes, body: bytes) -> None:
        """Answer the handshake with an HTTP response and close."""
        self._write(whole_response(status, self.state.date_header(), headers, body, False))
        self.phase = CLOSED
        self._deliver({"type": "websocket.disconnect", "code": 1006, "reason": ""})
        self.transport.close()

    def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake: our close frame, then the client's."""
        if self.phase != OPEN:
            return
        self.phase = CLOSING
        self._write(rfc6455.frame(rfc6455.CLOSE, rfc6455.close_payload(code, reason)))
        self.state.timer.set(self, self.state.settings.ws_ping_timeout)

    # -- writing -----------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(data)
            self.wrote(len(data))

    def wrote(self, n: int) -> None:
        """Count ``n`` bytes written; watch a socket that did not take them all."""
        self.written += n
        if self.transport.get_write_buffer_size():
            self.state.watch(self)

    async def send_frames(self, data: bytes) -> None:
        """``hubbub.frames`` ``send_frames``: ``data`` in one write, after any wait for room."""
        if self.write_paused and self.phase == OPEN:
            if self.drain is None:
                self.drain = self.state.loop.create_future()
            await self.drain
        if self.phase != OPEN or self.transport.is_closing():
            raise ClientDisconnected("the WebSocket is closed")
        self.state.counts.frame_writes += 1
        self._write(data)

    def write_frames(self, data: bytes) -> bool:
        """``hubbub.frames`` ``write_frames``: ``data`` now, or ``False`` while the buffer is full."""
        if self.write_paused:
            return False
        if self.phase != OPEN or self.transport.is_closing():
            raise ClientDisconnected("the WebSocket is closed")
        self.state.counts.frame_writes += 1
        gathered = self.state.gathered
        if gathered is None:
            self._write(data)
            return True
        parts = gathered.get(self)
        if parts is None:
            gathered[self] = [data]
        elif sum(map(len, parts)) >= GATHER_LIMIT:
            return False  # as a full buffer would: wait (after the block's writes)
        else:
            parts.append(data)
        return True


#: The most bytes held back for one connection in a gathered block; past it
#: ``write_frames`` answers as a full buffer does.
GATHER_LIMIT = 256 * 1024


__all__ = ["ClientDisconnected", "GATHER_LIMIT", "WebSocketProtocol", "header", "tokens",
           "upgrade"]
