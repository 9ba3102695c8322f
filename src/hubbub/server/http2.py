"""HTTP/2 (RFC 9113) for every HTTP door, on the ``h2`` state machine.

Theory of operation
-------------------
One :class:`H2Protocol` serves one connection, usually a TLS one whose
client chose ``h2`` by ALPN (:mod:`hubbub.server.tls`). ``h2`` parses and
frames (its public ``H2Connection`` API only); this module turns its events
into ASGI requests, one task per stream, each a
:class:`hubbub.server.h2stream.Stream`, and writes what ``h2`` has to send
after each batch of events and each send of a response. Many EventSources,
polls and publishes share one connection, so a browser is no longer held to
six connections per origin.

What the connection defends against, each with its setting in
:class:`hubbub.server.settings.ServerSettings`:

Streams: ``SETTINGS_MAX_CONCURRENT_STREAMS`` is ``h2_max_concurrent_streams``.
    Streams past it that a client opens before it acknowledged our settings
    are refused (RST_STREAM REFUSED_STREAM, RFC 9113 §5.1.2: "an endpoint
    that receives a HEADERS frame that causes its advertised concurrent
    stream limit to be exceeded MUST treat this as a stream error of type
    PROTOCOL_ERROR or REFUSED_STREAM"); a client that ignores the
    acknowledged limit loses the connection (``h2`` sends GOAWAY). The count
    is of requests whose application is still running, not of streams the
    protocol still thinks open, so resetting streams frees no room.
Rapid reset (CVE-2023-44487): more than ``h2_max_resets`` streams reset by
    the client within ``h2_reset_interval`` seconds end the connection with
    GOAWAY ENHANCE_YOUR_CALM (Netty's defaults: 200 in 30 s).
Header blocks (the CONTINUATION flood): ``SETTINGS_MAX_HEADER_LIST_SIZE`` is
    ``max_header_bytes``, enforced by ``h2``'s decoder, and ``h2`` refuses a
    block of more than 64 CONTINUATION frames; a block still open after
    ``head_timeout`` seconds (:mod:`hubbub.server.h2frames` follows the
    frames) ends the connection with GOAWAY ENHANCE_YOUR_CALM.
Malformed frames: ``h2`` raises, has a GOAWAY ready (PROTOCOL_ERROR, or the
    code the error names); it is written and the connection closed, every
    stream of it ended for its application.
Timers: a connection has ``head_timeout`` seconds to send its first request,
    and is closed (GOAWAY NO_ERROR) after ``keepalive_timeout`` seconds with
    no stream; a request body idle for ``body_timeout`` seconds gets 408.
Slow readers: the socket's send buffer is ``send_buffer`` bytes; once the
    transport holds more than it takes (``pause_writing``), the connection
    has ``write_deadline`` seconds to take it before it is cut off, and a
    stream whose flow-control window stays closed that long is reset. A cut
    off connection ends each streaming response with the rest of the body
    it was sending and its application's farewell (``hubbub.farewell``, see
    :mod:`hubbub.transports.extensions`) where the stream's window takes
    them (else the stream is reset), then GOAWAY; it stops being counted at
    once (``on_lost``), is closed, and is reset if it takes nothing more for
    ``cut_off_grace`` seconds. A stream reset for its shut window has its
    farewell asked too (the application learns why), but not sent.

Plugging it into a server: a listener with :func:`hubbub.server.tls.server_context`
hands each connection whose :func:`hubbub.server.tls.alpn_protocol` is
``"h2"`` over (``proto = H2Protocol(app, settings, on_lost=connections.discard)``,
``transport.set_protocol(proto)``, ``proto.connection_made(transport)``),
counts ``proto`` among its connections until ``on_lost``, and on shutdown
calls :meth:`H2Protocol.shutdown`, then ``proto.transport.abort()`` on what
outlives its drain.

Trade-off: a graceful :meth:`H2Protocol.shutdown` refuses new streams and
closes with GOAWAY once the running ones end. ``h2`` accepts no frame but
GOAWAY after it sent one, so the GOAWAY comes last rather than first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import msgspec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError
from h2.settings import SettingCodes, Settings

from ..transports.extensions import FAREWELL
from .h2frames import HeaderBlockWatch
from .h2stream import Stream, request_scope
from .settings import ServerSettings
from .state import reset

log = logging.getLogger("hubbub.server")

#: The connection's receive window: what all its streams may hold unread.
CONNECTION_WINDOW = 1024 * 1024
#: h2's initial connection window (RFC 9113 §6.9.2), raised to the above.
DEFAULT_WINDOW = 65_535

_encode = msgspec.json.Encoder().encode


class H2Protocol(asyncio.Protocol):
    """An HTTP/2 server connection running an ASGI application.

    Args:
        app: the ASGI application (its lifespan is run by the caller).
        settings: the server's limits and timeouts.
        on_lost: called with this protocol once its connection is gone (a
            server's count of connections).
    """

    def __init__(self, app: Any, settings: ServerSettings,
                 on_lost: Callable[[H2Protocol], None] | None = None) -> None:
        self.app, self.settings, self.on_lost = app, settings, on_lost
        self.conn = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.streams: dict[int, Stream] = {}
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self._writable = asyncio.Event()
        self._writable.set()
        self._timer: asyncio.TimerHandle | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._blocks = HeaderBlockWatch()
        self._block_timer: asyncio.TimerHandle | None = None
        self._resets = 0
        self._resets_since = 0.0
        self._peer: Any = None
        self._sock: Any = None
        self._tls = False
        self._forgotten = False

    # -- asyncio.Protocol --------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport has asyncio.Transport's methods without
        # being a subclass of it.
        self.transport = cast(asyncio.Transport, transport)
        self._peer = transport.get_extra_info("peername")
        self._sock = transport.get_extra_info("sockname")
        self._tls = transport.get_extra_info("ssl_object") is not None
        sock = transport.get_extra_info("socket")
        if sock is not None and self.settings.send_buffer:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer)
        # The limits are sent as an update, which h2 holds to once the client
        # acknowledged it (RFC 9113 §6.5.3), so a client that opened streams
        # before it knew the limit gets REFUSED_STREAM for those past it
        # (from _request) rather than a connection error; until then h2's
        # own header-list bound (64 KiB) holds.
        self.conn.local_settings = Settings(client=False, initial_values={
            SettingCodes.INITIAL_WINDOW_SIZE: self.settings.h2_stream_window,
        })
        self.conn.initiate_connection()
        self.conn.update_settings({
            SettingCodes.MAX_CONCURRENT_STREAMS: self.settings.h2_max_concurrent_streams,
            SettingCodes.MAX_HEADER_LIST_SIZE: self.settings.max_header_bytes,
        })
        self.conn.increment_flow_control_window(CONNECTION_WINDOW - DEFAULT_WINDOW)
        self.flush()
        self._arm(self.settings.head_timeout)

    def data_received(self, data: bytes) -> None:
        if self._blocks.feed(data):
            if self._block_timer is None:
                self._block_timer = asyncio.get_running_loop().call_later(
                    self.settings.head_timeout, self._goaway, ErrorCodes.ENHANCE_YOUR_CALM)
        elif self._block_timer is not None:
            self._block_timer.cancel()
            self._block_timer = None
        try:
            events = self.conn.receive_data(data)
        except ProtocolError as exc:
            log.debug("http/2 connection error from %s: %s", self._peer, exc)
            self._end_streams()
            self._close()  # h2 has the GOAWAY ready
            return
        for event in events:
            if isinstance(event, RequestReceived):
                self._request(event)
            elif isinstance(event, DataReceived):
                stream = self.streams.get(event.stream_id)
                if stream is None:
                    self.acknowledge(event.stream_id, event.flow_controlled_length)
                else:
                    stream.receive_data(event.data, event.flow_controlled_length)
            elif isinstance(event, StreamEnded):
                if (stream := self.streams.get(event.stream_id)) is not None:
                    stream.receive_end()
            elif isinstance(event, StreamReset):
                if (stream := self.streams.get(event.stream_id)) is not None:
                    stream.lose()
                if event.remote_reset:
                    self._count_reset()
            elif isinstance(event, WindowUpdated):
                if event.stream_id == 0:
                    self._open_windows()
                elif (stream := self.streams.get(event.stream_id)) is not None:
                    stream.window.set()
            elif isinstance(event, RemoteSettingsChanged):
                self._open_windows()
            elif isinstance(event, ConnectionTerminated):
                self._end_streams()
                self._close()
                return
        self.flush()

    def pause_writing(self) -> None:
        self._writable.clear()
        if self._stall is None:
            self._stall = asyncio.get_running_loop().call_later(
                self.settings.write_deadline, self._stalled)

    def resume_writing(self) -> None:
        self._writable.set()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_streams()
        self._writable.set()
        for timer in (self._timer, self._stall, self._block_timer):
            if timer is not None:
                timer.cancel()
        self._timer = self._stall = self._block_timer = None
        self._forget()

    def _forget(self) -> None:
        """Stop being counted among the server's connections (once)."""
        if not self._forgotten and self.on_lost is not None:
            self._forgotten = True
            self.on_lost(self)

    # -- what the streams call ---------------------------------------------------

    def flush(self) -> None:
        """Write what h2 has to send, if the connection is still open."""
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def acknowledge(self, stream_id: int, flow_length: int) -> None:
        """Give ``flow_length`` bytes of window back (body read or discarded)."""
        if flow_length:
            with contextlib.suppress(ProtocolError):
                self.conn.acknowledge_received_data(flow_length, stream_id)

    def send_head(self, stream: Stream, end: bool) -> None:
        """Hand the held response head to h2 (once), ending the stream with it if ``end``."""
        if stream.started is None or stream.head_sent:
            if end:
                self._guarded(stream, self.conn.end_stream, stream.id)
            return
        status, headers = stream.started
        stream.head_sent = True
        self._guarded(stream, self.conn.send_headers, stream.id,
                      [(b":status", str(status).encode()), *headers], end_stream=end)

    async def send_body(self, stream: Stream, body: bytes, end: bool) -> None:
        """Send ``body`` as the windows and the socket allow (the module's rules)."""
        view = memoryview(body)
        deadline = self.settings.write_deadline
        while not stream.gone.is_set():
            if not self._writable.is_set():
                self.flush()
                stream.pending = view  # a cut-off sends it before the farewell
                await self._writable.wait()  # pause_writing's timer bounds this
                stream.pending = None
                continue
            try:
                window = self.conn.local_flow_control_window(stream.id)
            except ProtocolError:
                stream.lose()
                return
            if window <= 0:
                self.flush()
                stream.window.clear()
                try:
                    async with asyncio.timeout(deadline):
                        await stream.window.wait()
                except TimeoutError:
                    log.info("http/2 stream %d of %s cut off: its window stayed shut",
                             stream.id, self._peer)
                    stream.last_words()  # the application learns why; nothing fits
                    self.reset(stream, ErrorCodes.CANCEL)
                    return
                continue
            n = min(len(view), window, self.conn.max_outbound_frame_size)
            chunk, view = view[:n], view[n:]
            last = end and not view
            if not self._guarded(stream, self.conn.send_data, stream.id, bytes(chunk),
                                 end_stream=last):
                return
            if not view:
                break
        self.flush()

    def reset(self, stream: Stream, code: ErrorCodes) -> None:
        """Reset ``stream`` (our side) and end it for its application."""
        with contextlib.suppress(ProtocolError):
            self.conn.reset_stream(stream.id, code)
        stream.lose()
        self.flush()

    def stream_done(self, stream: Stream) -> None:
        """The response is sent whole. RFC 9113 §8.1: a server that answers
        before the request's end "MAY request that the client abort
        transmission of a request without error by sending a RST_STREAM with
        an error code of NO_ERROR after sending a complete response"."""
        if not stream.ended:
            with contextlib.suppress(ProtocolError):
                self.conn.reset_stream(stream.id, ErrorCodes.NO_ERROR)
        stream.lose()
        self.flush()

    async def body_timed_out(self, stream: Stream) -> None:
        """A request body idle for ``body_timeout``: 408, or a reset once answered."""
        if stream.head_sent:
            self.reset(stream, ErrorCodes.CANCEL)
        else:
            self.answer(stream, 408, "request-timeout", "Request timeout",
                        "the request body stalled")

    def answer(self, stream: Stream, status: int, code: str, title: str, detail: str) -> None:
        """Answer ``stream`` with a problem document (RFC 9457) in place of the application."""
        body = _encode({"type": "https://hubbub.dev/problems/" + code, "title": title,
                        "status": status, "detail": detail, "code": code})
        stream.started = (status, [(b"content-type", b"application/problem+json"),
                                   (b"content-length", str(len(body)).encode())])
        stream.head_sent = False
        self.send_head(stream, False)
        self._guarded(stream, self.conn.send_data, stream.id, body, end_stream=True)
        stream.done = True
        self.stream_done(stream)

    def shutdown(self) -> None:
        """Refuse new streams; close with GOAWAY once the running ones end."""
        self.closing = True
        if not self.streams:
            self._goaway(ErrorCodes.NO_ERROR)

    # -- inside ------------------------------------------------------------------

    def _request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        if self.closing or len(self.streams) >= self.settings.h2_max_concurrent_streams:
            with contextlib.suppress(ProtocolError):
                self.conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            return
        self._disarm()
        try:
            scope = request_scope(list(event.headers or ()), self._peer, self._sock, self._tls)
        except ValueError:
            scope = request_scope([(b":method", b"GET"), (b":path", b"/")],
                                  self._peer, self._sock, self._tls)
            stream = self.streams[sid] = Stream(self, sid, scope)
            self.answer(stream, 405, "method-not-allowed", "Method not allowed",
                        "this server takes no CONNECT requests")
            del self.streams[sid]
            self._idle()
            return
        stream = self.streams[sid] = Stream(self, sid, scope)
        scope["extensions"][FAREWELL] = stream.farewell
        if event.stream_ended is not None:
            stream.receive_end()
        stream.task = asyncio.get_running_loop().create_task(self._run(stream))

    async def _run(self, stream: Stream) -> None:
        try:
            await self.app(stream.scope, stream.receive, self._sender(stream))
        except Exception:
            if not stream.gone.is_set():
                log.exception("the application failed on %s %s", stream.scope["method"],
                              stream.scope["path"])
        finally:
            if not (stream.gone.is_set() or stream.done):
                if stream.head_sent:  # a response cut short must not look whole
                    self.reset(stream, ErrorCodes.INTERNAL_ERROR)
                else:
                    self.answer(stream, 500, "internal", "Internal error",
                                "the server failed to answer")
            del self.streams[stream.id]
            stream.last = None
            stream.scope["extensions"].pop(FAREWELL, None)  # the stream and its scope part
            self._idle()

    def _sender(self, stream: Stream) -> Callable[[dict[str, Any]], Awaitable[None]]:
        """``stream.send``, and a response head that no body follows in the
        same step (a stream that starts, then waits for its first event) is
        written on the loop's next pass; a whole response's head goes out
        with its body, in one write."""
        loop = asyncio.get_running_loop()

        async def send(message: dict[str, Any]) -> None:
            await stream.send(message)
            if message["type"] == "http.response.start":
                loop.call_soon(self._head_due, stream)

        return send

    def _head_due(self, stream: Stream) -> None:
        if not (stream.head_sent or stream.done or stream.gone.is_set()):
            self.send_head(stream, False)
            self.flush()

    def _guarded(self, stream: Stream, call: Callable[..., object], *args: Any,
                 **kwargs: Any) -> bool:
        """Run an h2 call for ``stream``; one h2 refuses (the stream is closed,
        or a response field is not valid HTTP/2) resets the stream."""
        try:
            call(*args, **kwargs)
        except ProtocolError as exc:
            log.debug("http/2 stream %d of %s reset: %s", stream.id, self._peer, exc)
            self.reset(stream, ErrorCodes.INTERNAL_ERROR)
            return False
        return True

    def _idle(self) -> None:
        if self.streams:
            return
        if self.closing:
            self._goaway(ErrorCodes.NO_ERROR)
        else:
            self._arm(self.settings.keepalive_timeout)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        if self.transport is not None and not self.transport.is_closing():
            self._timer = asyncio.get_running_loop().call_later(
                seconds, self._goaway, ErrorCodes.NO_ERROR)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _count_reset(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._resets_since > self.settings.h2_reset_interval:
            self._resets, self._resets_since = 0, now
        self._resets += 1
        if self._resets > self.settings.h2_max_resets:
            log.info("http/2 connection from %s closed: %d streams reset in %.0f s",
                     self._peer, self._resets, self.settings.h2_reset_interval)
            self._goaway(ErrorCodes.ENHANCE_YOUR_CALM)

    def _goaway(self, code: ErrorCodes) -> None:
        with contextlib.suppress(ProtocolError):
            self.conn.close_connection(error_code=code)
        self._end_streams()
        self._close()

    def _open_windows(self) -> None:
        for stream in self.streams.values():
            stream.window.set()

    def _end_streams(self) -> None:
        for stream in list(self.streams.values()):
            stream.lose()

    def _close(self) -> None:
        """Write what is left (a GOAWAY) and close; a peer that takes nothing
        more is cut off after ``write_deadline``."""
        self.flush()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
            self._disarm()
            self._timer = asyncio.get_running_loop().call_later(
                self.settings.write_deadline, self.transport.abort)

    def _stalled(self) -> None:
        """A slow consumer (the module docstring): last words, GOAWAY, the end."""
        self._stall = None
        log.info("http/2 connection from %s cut off: it took nothing for %.0f s",
                 self._peer, self.settings.write_deadline)
        self._forget()
        for stream in list(self.streams.values()):
            self._farewell(stream)
        with contextlib.suppress(ProtocolError):
            self.conn.close_connection(error_code=ErrorCodes.NO_ERROR)
        self._end_streams()
        self.flush()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
            self._disarm()
            self._timer = asyncio.get_running_loop().call_later(
                self.settings.cut_off_grace, reset, transport)

    def _farewell(self, stream: Stream) -> None:
        """End a running stream of a cut-off connection: the rest of the body
        it was sending and its farewell, if its window takes them; else a reset."""
        pending, stream.pending = stream.pending, None
        words = stream.last_words()
        if stream.done or stream.gone.is_set():
            return
        data = (bytes(pending) if pending is not None else b"") + words
        try:
            if not words or len(data) > self.conn.local_flow_control_window(stream.id):
                # Without last words a stream cut short must not look whole.
                raise ProtocolError("nothing to say, or the window is too small")
            size = self.conn.max_outbound_frame_size
            for at in range(0, len(data), size):
                self.conn.send_data(stream.id, data[at:at + size],
                                    end_stream=at + size >= len(data))
        except ProtocolError:
            self.reset(stream, ErrorCodes.CANCEL)
            return
        stream.done = True
        stream.lose()


__all__ = ["CONNECTION_WINDOW", "H2Protocol"]
