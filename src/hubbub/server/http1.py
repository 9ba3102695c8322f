"""HTTP/1.1 over one connection: the ``httptools`` parser, ASGI requests, limits.

Theory of operation
-------------------
:class:`HttpProtocol` is an ``asyncio.Protocol``. It feeds what the socket
brings to ``httptools.HttpRequestParser``, whose callbacks build each
request's ASGI scope; each request runs the app in a task of its own, one
at a time: pipelined requests wait in order, with reading paused, and are
answered in order (RFC 9112 §9.3.2). A WebSocket upgrade hands the socket
to :class:`hubbub.server.websocket.WebSocketProtocol`.

Every connection is in one phase, and each phase has its deadline on the
server's shared timer (:class:`hubbub.server.state.Timer`):

=========  ======================================  =============================
phase      until                                   past the deadline
=========  ======================================  =============================
HEAD       the request's head is complete          408 and close (slowloris)
BODY       the body is complete (reset per chunk)  408 and close
RUNNING    the response is complete                (no deadline: the app's)
IDLE       the next request begins (keep-alive)    close
LINGER     the client closes its side              close
=========  ======================================  =============================

Invariants
----------
"bad input refused first": Bad input is answered before any app runs, with
    a problem document and ``connection: close``: a malformed or smuggling
    request (the parser refuses conflicting ``Content-Length`` and
    ``Transfer-Encoding``, duplicate or invalid lengths, obsolete line
    folding) with 400, a head past ``max_header_bytes`` with 431, a
    connection past ``max_connections`` with 503.
"the server closes lingering": A connection the server closes first has its
    write side shut (the client reads the whole answer and then the end),
    and what the client still sends is read and dropped until it closes or
    ``linger_timeout`` passes. Closed at once, a socket with unread input
    sends a reset, and the client often loses the answer (RFC 9112 §9.6).
"an unread body is never a request": A response that ends before its
    request's body was read (an early 413, or a final answer to
    ``Expect: 100-continue`` whose body never came) closes the connection,
    lingering (invariant "the server closes lingering").
"slow consumer cut off": Writes that the socket does not take within
    ``write_deadline`` cut the connection off (:meth:`ServerState.watch`),
    never waiting for the client to read: a streaming response (SSE) ends
    with its app's farewell (``hubbub.farewell``, see
    :mod:`hubbub.transports.extensions`) queued after what the socket has
    not taken, its app sees ``http.disconnect``, the connection stops being
    counted, and the socket is closed, then reset if it takes nothing more
    for ``cut_off_grace`` seconds. Any other connection is reset at once.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import Any

import httptools

from ..transports.extensions import FAREWELL, LastBody
from .asgi import http_scope, problem_response
from .cycle import Request
from .http2 import H2Protocol
from .state import ServerState, reset
from .websocket import header, tokens, upgrade
from .whole import Responder
from .writes import socket_fd

log = logging.getLogger("hubbub.server")
#: One line per response at INFO (``hubbub serve --access-log``).
access = logging.getLogger("hubbub.access")

HEAD, BODY, RUNNING, IDLE, LINGER = range(5)
#: Request body bytes held for the app before reading pauses.
BODY_HIGH_WATER = 256 * 1024
#: Header names as sent, and their lower-case form: the same few names come
#: in every request, so each is lowered once and every scope shares the
#: bytes (a WebSocket's scope keeps its headers for the connection's life).
_LOWER: dict[bytes, bytes] = {}
#: Names kept in :data:`_LOWER` at most: made-up names past it are lowered each time.
LOWER_NAMES = 1024


class Refuse(Exception):
    """Raised in a parser callback: answer ``status`` with ``detail`` and close."""

    def __init__(self, status: int, detail: str, code: str) -> None:
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


def tune_socket(transport: asyncio.BaseTransport, send_buffer: int | None) -> None:
    """``TCP_NODELAY`` and the kernel's send buffer (``SO_SNDBUF``) of a TCP socket."""
    sock = transport.get_extra_info("socket")
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if send_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    except OSError:  # pragma: no cover - a socket already gone
        pass


class HttpProtocol(asyncio.Protocol):
    """HTTP/1.1 on one connection (the module docstring's phases and rules)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.transport: Any = None
        self.parser = httptools.HttpRequestParser(self)
        self.phase = HEAD
        self.deadline: float | None = None
        self.timer_key: int | None = None
        self.url: list[bytes] = []
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        #: A request began (its first byte came) and its head is not complete.
        self.begun = False
        #: The request's head asked for a WebSocket upgrade.
        self.upgrading = False
        self.parsing: Request | None = None  # the request whose body is read
        self.current: Request | None = None  # the request whose app runs
        self.pipeline: deque[Request] = deque()
        self.responder: Responder | None = None
        self.reading = True
        self.write_paused = False
        self.written = 0
        #: Its socket's number for direct writes, or -1 (:func:`hubbub.server.writes.socket_fd`).
        self.fd = -1
        self._drain: asyncio.Future[None] | None = None
        self.server: tuple[str, int] | None = None
        self.client: tuple[str, int] | None = None
        self.scheme = "http"
        #: Cut off as a slow consumer: the grace's end resets the connection.
        self.cut = False

    # -- the connection ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        state = self.state
        state.connections.add(self)
        settings = state.settings
        tune_socket(transport, settings.send_buffer)
        self.fd = socket_fd(transport)
        self.server = state.listening(_addr(transport.get_extra_info("sockname")))
        self.client = _addr(transport.get_extra_info("peername"))
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self.scheme = "https"
        if len(state.connections) > settings.max_connections or state.closing:
            state.counts.refused += 1
            self.refuse(503, "the server has as many connections as it serves", "unavailable")
            return
        if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
            self._hand_to_h2(transport)
            return
        state.timer.set(self, settings.head_timeout)

    def _hand_to_h2(self, transport: Any) -> None:
        """Serve HTTP/2 (ALPN ``h2``) with :mod:`hubbub.server.http2`: the
        connection stays counted under its new protocol until it is lost."""
        state = self.state
        state.connections.discard(self)
        proto = H2Protocol(state.app, state.settings, on_lost=state.connections.discard)
        state.connections.add(proto)
        transport.set_protocol(proto)
        proto.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        state = self.state
        state.connections.discard(self)
        state.timer.set(self, None)
        state.unwatch(self)
        self.phase = LINGER
        for request in (self.current, self.parsing):
            if request is not None and not request.gone:
                request.gone = True
                request.wake()
        if self.responder is not None:
            self.responder.lost()
        self.pipeline.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def eof_received(self) -> bool | None:
        # The client's end is its leaving: the transport closes, and a
        # waiting request hears http.disconnect (half-closed clients are not served).
        return None

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    async def drained(self) -> None:
        """Wait until the transport's buffer is below its low-water mark (or the end)."""
        if self.write_paused and not self.transport.is_closing():
            if self._drain is None:
                self._drain = self.state.loop.create_future()
            await self._drain

    def write(self, data: bytes) -> None:
        self.transport.write(data)
        self.wrote(len(data))

    def wrote(self, n: int) -> None:
        """Count ``n`` bytes written to the transport (or its socket); watch a
        socket that did not take them all (invariant "slow consumer cut off")."""
        self.written += n
        if self.transport.get_write_buffer_size():
            self.state.watch(self)

    def bytes_taken(self) -> int:
        left = self.transport.get_write_buffer_size()
        return -1 if not left else self.written - left

    def cut_off(self) -> None:
        """The socket took nothing for the write deadline (invariant "slow
        consumer cut off"). A streaming response ends with its app's last
        words, queued after what the client has not taken; the socket is
        closed and reset if it takes nothing more within ``cut_off_grace``.
        Without last words it is reset at once. It stops being counted at once."""
        state = self.state
        log.info("cutting off a client that read nothing for %gs",
                 state.settings.write_deadline)
        state.connections.discard(self)
        request = self.current
        if (request is None or not request.started or request.complete or request.gone
                or self.phase == LINGER):
            reset(self.transport)
            return
        data = request.farewell()
        if data is None:
            reset(self.transport)
            return
        self.phase = LINGER
        self.cut = True
        self.pipeline.clear()
        self.transport.write(data)
        self.transport.close()
        state.timer.set(self, state.settings.cut_off_grace)
        self.resume_writing()  # the app's send waits no more: it is gone

    def farewell(self, last: LastBody | None) -> None:
        """``hubbub.farewell`` of the running request: what :meth:`cut_off` sends."""
        if self.current is not None:
            self.current.last = last

    def idle(self) -> bool:
        """Whether the connection waits for a request (none begun, none running)."""
        return self.phase == IDLE or (self.phase == HEAD and not self.begun)

    def pause_reading(self) -> None:
        if self.reading:
            self.reading = False
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.reading and self.phase != LINGER and not self.transport.is_closing():
            self.reading = True
            self.transport.resume_reading()

    def expired(self) -> None:
        if self.phase == HEAD and self.begun:
            self.state.counts.timed_out += 1
            self.refuse(408, "the request head took too long", "timeout")
        elif self.phase == BODY:
            self.state.counts.timed_out += 1
            request = self.parsing
            if request is not None:
                request.gone = True
                request.wake()
            if self.current is None or not self.current.started:
                self.refuse(408, "the request body took too long", "timeout")
            else:
                self.linger()
        elif self.phase == LINGER:
            # What the socket has not taken by now it will not: drop it (a
            # slow consumer's with a reset: it took nothing for long).
            if self.cut:
                reset(self.transport)
            else:
                self.transport.abort()
        else:  # an idle connection
            self.transport.close()

    def refuse(self, status: int, detail: str, code: str, extra: bytes = b"") -> None:
        """Answer with a problem document and close, lingering (invariants "bad input refused first" and
        "the server closes lingering")."""
        self.write(problem_response(status, detail, code, self.state.date_header(), extra))
        self.linger()

    def linger(self) -> None:
        """Shut the write side, drop what comes, close on the client's end
        (invariant "the server closes lingering")."""
        if self.phase == LINGER:
            return
        self.phase = LINGER
        transport = self.transport
        self.pipeline.clear()
        if transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
            if not self.reading:
                self.reading = True
                transport.resume_reading()
            self.state.timer.set(self, self.state.settings.linger_timeout)
        else:
            transport.close()

    # -- parsing -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.phase == LINGER:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if not self.upgrading:  # not to WebSocket: nothing more is read
                self.pause_reading()
                return
            offset = upgrade.args[0] if upgrade.args else len(data)
            self._upgrade(data[offset:] if isinstance(offset, int) else b"")
        except httptools.HttpParserCallbackError as exc:
            refused = exc.__context__
            if isinstance(refused, Refuse):
                self._bad(refused.status, refused.detail, refused.code)
            else:  # pragma: no cover - a bug of this module
                log.exception("request parsing failed")
                self._bad(500, "internal error", "internal")
        except httptools.HttpParserError as exc:
            self._bad(400, f"malformed request: {exc}", "invalid-request")

    def _bad(self, status: int, detail: str, code: str) -> None:
        if self.current is not None and self.current.started:
            self.linger()
        else:
            if self.current is not None:
                self.current.gone = True
                self.current.wake()
            self.refuse(status, detail, code)

    def _grow(self, n: int) -> None:
        self.head_size += n
        if self.head_size > self.state.settings.max_header_bytes:
            raise Refuse(431, "the request head is too large", "headers-too-large")

    def on_message_begin(self) -> None:
        self.begun = True
        self.url = []
        self.headers = []
        self.head_size = 0
        if self.phase == IDLE:
            self.phase = HEAD
            self.state.timer.set(self, self.state.settings.head_timeout)

    def on_url(self, url: bytes) -> None:
        self._grow(len(url))
        self.url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._grow(len(name) + len(value) + 4)
        lowered = _LOWER.get(name)
        if lowered is None:
            lowered = name.lower()
            if len(_LOWER) < LOWER_NAMES:
                _LOWER[name] = lowered
        self.headers.append((lowered, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self.begun = False
        if parser.should_upgrade() and "websocket" in tokens(header(self.headers, b"upgrade")):
            self.upgrading = True
            return  # data_received gets HttpParserUpgrade next
        expect_100 = has_body = False
        for name, value in self.headers:
            if name == b"expect" and value.lower() == b"100-continue":
                expect_100 = True
            elif name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
                has_body = True
        self.responder = self.responder or Responder(self)
        scope = http_scope(
            self.state, method=parser.get_method().decode("ascii"), target=b"".join(self.url),
            headers=self.headers, http_version=parser.get_http_version(),
            scheme=self.scheme, server=self.server, client=self.client,
            responder=self.responder)
        scope["extensions"][FAREWELL] = self.farewell
        # Another upgrade (h2c, say) is ignored, as RFC 9110 §7.8 allows: the
        # request is served over HTTP/1.1, and the connection then closes.
        keep_alive = parser.should_keep_alive() and not parser.should_upgrade()
        request = Request(self, scope, keep_alive, expect_100, has_body)
        self.parsing = request
        if has_body:
            self.phase = BODY
            self.state.timer.set(self, self.state.settings.body_timeout)
        else:
            self.phase = RUNNING
            self.state.timer.set(self, None)
        if self.current is None:
            self._run(request)
            return
        self.pipeline.append(request)
        if not self.current.complete:
            self.pause_reading()
        # else the running request's response is written and its follow-up
        # (response_done, at the end of this loop pass) starts this one before
        # the socket is read again: stopping and restarting the reads would
        # cost more than the read they could save.

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if request is None or request.gone:
            return
        request.body.append(body)
        request.body_size += len(body)
        if request.body_size > BODY_HIGH_WATER:
            self.pause_reading()
        self.state.timer.set(self, self.state.settings.body_timeout)
        request.wake()

    def on_message_complete(self) -> None:
        if self.upgrading:
            return
        request = self.parsing
        if request is not None:
            request.more_body = False
            request.wake()
        if self.phase == BODY:
            self.phase = RUNNING
            self.state.timer.set(self, None)

    # -- running -------------------------------------------------------------

    def _run(self, request: Request) -> None:
        self.current = request
        self.state.run_app(self._app(request))

    async def _app(self, request: Request) -> None:
        try:
            await self.state.app(request.scope, request.receive, request.send)
        except Exception:
            log.exception("the app failed on %s %s", request.scope["method"],
                          request.scope["path"])
            if not request.started and not request.gone:
                request.complete = True
                self.refuse(500, "internal error", "internal")
            elif not request.complete:
                self.transport.close()
            return
        if not request.complete and not request.gone:
            if not request.started:
                log.error("the app returned without a response")
                request.complete = True
                self.refuse(500, "internal error", "internal")
            else:
                self.transport.close()

    def response_done(self, request: Request) -> None:
        """What follows a complete response: the next request, keep-alive or the close."""
        request.wake()
        if access.isEnabledFor(logging.INFO):
            scope = request.scope
            target = scope["raw_path"]
            if scope["query_string"]:  # tokens in it are redacted (server.run.redact_logs)
                target += b"?" + scope["query_string"]
            access.info('%s - "%s %s HTTP/%s" %d', (self.client or ("-",))[0],
                        scope["method"], target.decode("latin-1"),
                        scope["http_version"], request.status)
        if self.transport.is_closing() or self.phase == LINGER:
            return
        # A body not read to its end must not be read as a request
        # (invariant "an unread body is never a request").
        if not request.keep_alive or request.more_body or self.state.closing:
            self.linger()
            return
        self.current = None
        if self.pipeline:
            self._run(self.pipeline.popleft())
            if not self.pipeline:
                self.resume_reading()
            return
        if self.begun:  # the next head began while this request ran: it has its deadline
            self.phase = HEAD
            self.state.timer.set(self, self.state.settings.head_timeout)
        elif self.phase == RUNNING:
            self.phase = IDLE
            self.state.timer.set(self, self.state.settings.keepalive_timeout)
        self.resume_reading()

    def _upgrade(self, rest: bytes) -> None:
        if self.current is not None:
            self.refuse(400, "a WebSocket upgrade must not be pipelined", "invalid-request")
            return
        self.state.timer.set(self, None)
        upgrade(self, self.headers, b"".join(self.url), rest)


def _addr(addr: Any) -> tuple[str, int] | None:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return str(addr[0]), int(addr[1])
    return None


__all__ = ["HttpProtocol", "Refuse", "tune_socket"]
