"""One HTTP/2 stream as one ASGI ``http`` request: its scope, its
``receive()`` and its ``send()``.

Theory of operation
-------------------
:class:`hubbub.server.http2.H2Protocol` owns the connection (the ``h2``
state machine, the socket, the timers); a :class:`Stream` owns what the
application sees of one request. The connection pushes into it (body
chunks, the end of the body, a reset, the loss of the connection, a window
that opened); the application pulls from it and sends through it.

Rules, each a promise of RFC 9113 or of the ASGI HTTP spec:

Body: the request body is acknowledged to the peer (WINDOW_UPDATE) only as
    the application takes it from ``receive()``, so what a connection holds
    unread is bounded by its flow-control windows, never by the client's
    will. A stream that ends without taking its body gives the rest back
    to the connection's window (:meth:`Stream.discard`).
Send: response data goes out as far as the peer's flow-control window and
    the socket allow; past either, ``send()`` waits. A stream whose window
    stays closed for ``write_deadline`` seconds is reset (CANCEL): its
    client is a slow consumer, and the door sees ``http.disconnect``.
Gone: after a reset by the peer or the loss of the connection, ``receive()``
    answers ``http.disconnect`` and ``send()`` drops what it is given (as
    HTTP/1.1 servers do; the doors learn of the loss from ``receive()``).
Headers: RFC 9113 §8.3.1 pseudo-headers become the scope's ``method``,
    ``scheme``, ``path`` and ``query_string``; ``:authority`` becomes the
    ``host`` header where the request has none (§8.3.1: "clients that
    generate HTTP/2 requests directly MUST use the :authority pseudo-header
    field to convey authority information, unless there is no authority
    information to convey"), and split ``cookie`` fields are joined with
    "; " (§8.2.3) before the application sees them. Connection-specific
    response fields (§8.2.2) are dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Protocol
from urllib.parse import unquote

from ..transports.extensions import LastBody
from .settings import ServerSettings

log = logging.getLogger("hubbub.server")

#: Response fields HTTP/2 forbids (RFC 9113 §8.2.2): "An endpoint MUST NOT
#: generate an HTTP/2 message containing connection-specific header fields".
CONNECTION_FIELDS = frozenset({
    b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"})

Headers = list[tuple[bytes, bytes]]


def request_scope(headers: Headers, client: Any, server: Any, tls: bool) -> dict[str, Any]:
    """The ASGI ``http`` scope of a request's header block.

    Args:
        headers: the decoded header block (names lower case, as h2 checked).
        client: the peer's address (``transport.get_extra_info("peername")``).
        server: ours (``"sockname"``).
        tls: whether the connection is TLS, for a request without ``:scheme``.

    Returns:
        The scope, with ``http_version`` ``"2"``.

    Raises:
        ValueError: a request HTTP/2 cannot carry here (no ``:path``, as in
            CONNECT): the caller answers it and runs no application.
    """
    pseudo: dict[bytes, bytes] = {}
    fields: Headers = []
    cookies: list[bytes] = []
    for name, value in headers:
        if name[:1] == b":":
            pseudo[name] = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            fields.append((name, value))
    if cookies:
        fields.append((b"cookie", b"; ".join(cookies)))
    authority = pseudo.get(b":authority")
    if authority is not None and not any(name == b"host" for name, _ in fields):
        fields.insert(0, (b"host", authority))
    raw = pseudo.get(b":path")
    if raw is None or pseudo.get(b":protocol") is not None:
        raise ValueError("no :path")
    raw_path, _, query = raw.partition(b"?")
    scheme = pseudo.get(b":scheme", b"https" if tls else b"http").decode("ascii", "replace")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "2",
        "method": pseudo.get(b":method", b"GET").decode("ascii", "replace"),
        "scheme": scheme,
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": fields,
        "client": client,
        "server": server,
        "extensions": {},
    }


class Owner(Protocol):
    """What a stream uses of its connection (:class:`hubbub.server.http2.H2Protocol`)."""

    @property
    def settings(self) -> ServerSettings: ...

    def acknowledge(self, stream_id: int, flow_length: int) -> None: ...

    def send_head(self, stream: Stream, end: bool) -> None: ...

    async def send_body(self, stream: Stream, body: bytes, end: bool) -> None: ...

    def stream_done(self, stream: Stream) -> None: ...

    async def body_timed_out(self, stream: Stream) -> None: ...


class Stream:
    """The application's side of one HTTP/2 stream (see the module's rules)."""

    __slots__ = ("owner", "id", "scope", "head", "chunks", "readable", "ended",
                 "final_given", "gone", "done", "started", "head_sent", "window", "task",
                 "last", "pending")

    def __init__(self, owner: Owner, stream_id: int, scope: dict[str, Any]) -> None:
        self.owner, self.id, self.scope = owner, stream_id, scope
        self.head = scope["method"] == "HEAD"
        #: Body chunks not taken yet, with their flow-controlled length.
        self.chunks: deque[tuple[bytes, int]] = deque()
        self.readable = asyncio.Event()
        #: The peer ended its side of the stream (END_STREAM).
        self.ended = False
        #: ``receive()`` has answered ``more_body: False``.
        self.final_given = False
        #: Reset, or the connection lost: nothing more goes either way.
        self.gone = asyncio.Event()
        #: The response's last byte is handed to h2.
        self.done = False
        #: ``(status, headers)`` of the response, held until its first body.
        self.started: tuple[int, Headers] | None = None
        #: The head is handed to h2.
        self.head_sent = False
        self.window = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        #: What the application says to a slow consumer (``hubbub.farewell``).
        self.last: LastBody | None = None
        #: The part of a body ``send()`` holds, not yet handed to h2.
        self.pending: memoryview | None = None

    # -- what the connection pushes ------------------------------------------

    def receive_data(self, data: bytes, flow_length: int) -> None:
        """Body bytes arrived; the peer's window is given back as they are read."""
        if self.done or self.gone.is_set():
            self.owner.acknowledge(self.id, flow_length)
            return
        self.chunks.append((data, flow_length))
        self.readable.set()

    def receive_end(self) -> None:
        self.ended = True
        self.readable.set()

    def lose(self) -> None:
        """The stream is reset or the connection gone: wake every waiter."""
        if not self.gone.is_set():
            self.gone.set()
            self.readable.set()
            self.window.set()
            self.discard()

    def farewell(self, last: LastBody | None) -> None:
        """``hubbub.farewell``: what the connection sends if it cuts this
        stream's client off as a slow consumer."""
        self.last = last

    def last_words(self) -> bytes:
        """The application's farewell (asked once), if its response is under
        way; else nothing."""
        last, self.last = self.last, None
        if last is None or self.done or self.gone.is_set() or not self.head_sent:
            return b""
        try:
            return last()
        except Exception:
            log.exception("the application's farewell to a slow consumer failed")
            return b""

    def discard(self) -> None:
        """Give the connection's window back for the body nobody will read."""
        while self.chunks:
            self.owner.acknowledge(self.id, self.chunks.popleft()[1])

    # -- ASGI ------------------------------------------------------------------

    async def receive(self) -> dict[str, Any]:
        """The next ASGI event: body chunks, then ``http.disconnect`` once the
        stream is gone (after the response, only that)."""
        while True:
            if self.gone.is_set():
                return {"type": "http.disconnect"}
            if self.chunks:
                data, flow_length = self.chunks.popleft()
                self.owner.acknowledge(self.id, flow_length)
                more = bool(self.chunks) or not self.ended
                self.final_given = not more
                return {"type": "http.request", "body": data, "more_body": more}
            if self.ended and not self.final_given:
                self.final_given = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if self.ended or self.done:
                await self.gone.wait()
                continue
            self.readable.clear()
            try:
                async with asyncio.timeout(self.owner.settings.body_timeout):
                    await self.readable.wait()
            except TimeoutError:
                await self.owner.body_timed_out(self)

    async def send(self, message: dict[str, Any]) -> None:
        """Send an ASGI response event through the stream (see the rules)."""
        kind = message["type"]
        if self.gone.is_set() or self.done:
            return
        if kind == "http.response.start":
            if self.started is not None:
                raise RuntimeError("the response has started already")
            headers = [(bytes(k).lower(), bytes(v)) for k, v in message.get("headers", ())]
            self.started = (int(message["status"]), [
                h for h in headers if h[0] not in CONNECTION_FIELDS])
            return
        if kind != "http.response.body":
            return  # trailers, or an extension this server does not offer
        if self.started is None:
            raise RuntimeError("a response body before its start")
        end = not message.get("more_body", False)
        body = b"" if self.head else bytes(message.get("body", b""))
        self.owner.send_head(self, end and not body)
        if body:
            await self.owner.send_body(self, body, end)
        if end:
            self.done = True
            self.owner.stream_done(self)


__all__ = ["CONNECTION_FIELDS", "Stream", "request_scope"]
