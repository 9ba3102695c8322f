"""One HTTP/1.1 request-response cycle: the app's ``receive`` and ``send``.

A :class:`Request` is made by :class:`hubbub.server.http1.HttpProtocol` once a
request's head is parsed; the body the parser reads is handed to ``receive``,
and ``send`` writes the response: the head together with the first body
part (one write for a whole response), then chunks (HTTP/1.1) for a
streaming response of unknown length, such as SSE.

Invariants
----------
"continue only when asked": ``Expect: 100-continue`` gets ``100 Continue``
    when the app first asks for the body, and never once the response
    started (RFC 9110 §10.1.1).
"what arrived before the end": A client that left mid-body: what arrived is
    handed over first, then ``http.disconnect`` (ASGI spec 2.3: a send after
    that is dropped).
"an early answer says close": A response that ends before the request's
    body does says ``connection: close``: the connection ends after it, so
    the unread body is never read as a request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from ..transports.extensions import LastBody
from .asgi import status_line
from .state import ServerState

log = logging.getLogger("hubbub.server")


class Connection(Protocol):
    """What a request uses of its HTTP/1.1 connection
    (:class:`hubbub.server.http1.HttpProtocol`, which imports this module)."""

    @property
    def state(self) -> ServerState: ...

    @property
    def write_paused(self) -> bool: ...

    def write(self, data: bytes) -> None: ...

    def wrote(self, n: int) -> None:
        """Count ``n`` bytes written to the transport (or its socket) another way."""

    async def drained(self) -> None: ...

    def resume_reading(self) -> None: ...

    def response_done(self, request: Request) -> None: ...


class Request:
    """One request-response cycle: the app's ``receive`` and ``send``."""

    __slots__ = ("conn", "scope", "body", "body_size", "more_body", "started", "complete",
                 "keep_alive", "head_only", "expect_100", "chunked", "head", "waiter",
                 "gone", "read_all", "length_known", "status", "last")

    def __init__(self, conn: Connection, scope: dict[str, Any], keep_alive: bool,
                 expect_100: bool, has_body: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.body: list[bytes] = []
        self.body_size = 0
        self.more_body = has_body
        self.started = self.complete = self.gone = self.chunked = False
        self.read_all = self.length_known = False
        self.status = 0
        self.keep_alive = keep_alive
        self.head_only = scope["method"] == "HEAD"
        self.expect_100 = expect_100
        self.head: bytes | None = None  # the response head, written with the first body
        self.waiter: asyncio.Future[None] | None = None
        #: What the app says to a slow consumer (``hubbub.farewell``).
        self.last: LastBody | None = None

    def wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        conn = self.conn
        if self.expect_100 and self.more_body and not self.started and not self.gone:
            # RFC 9110 §10.1.1: the client waits for 100 (Continue) before the body.
            self.expect_100 = False
            conn.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        while (not self.gone and not self.complete and not self.body
               and (self.more_body or self.read_all)):
            conn.resume_reading()
            self.waiter = conn.state.loop.create_future()
            await self.waiter
        if self.complete or (self.gone and not self.body):
            # A client that left mid-body: what arrived is handed over first.
            return {"type": "http.disconnect"}
        body = b"".join(self.body) if len(self.body) != 1 else self.body[0]
        self.body.clear()
        self.body_size = 0
        if self.more_body:
            conn.resume_reading()
        else:
            self.read_all = True
        return {"type": "http.request", "body": body, "more_body": self.more_body}

    async def send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if self.gone:
            return
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind}")
            self.started = True
            self._start(message["status"], message.get("headers", ()))
            return
        if kind != "http.response.body" or self.complete:
            raise RuntimeError(f"unexpected ASGI message {kind}")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        data = self._body(body, more)
        if not more:
            self.complete = True
        if data:
            self.conn.write(data)
        if not more:
            self.conn.response_done(self)
        elif self.conn.write_paused:
            await self.conn.drained()

    def _body(self, body: bytes, more: bool) -> bytes:
        """The bytes of a body part: the held head first, framed as the
        response's end says (chunks, or as they are)."""
        head, self.head = self.head, None
        if head is not None:
            head = self._finish_head(head, len(body), more)
        if self.head_only:
            return head or b""
        if self.chunked:
            data = (head or b"") + (b"%x\r\n%s\r\n" % (len(body), body) if body else b"")
            return data + b"0\r\n\r\n" if not more else data
        return head + body if head is not None else body

    def farewell(self) -> bytes | None:
        """The end of a started response whose client is cut off as a slow
        consumer: the app's last words (its ``hubbub.farewell``) as the last
        body part; ``None`` when it has none (or the response's length was
        said): then the connection is reset, as a response cut short must not
        look whole. Either way the request is gone from now on: the app hears
        ``http.disconnect``, and nothing it sends is written."""
        last, self.last = self.last, None
        self.complete = self.gone = True
        self.wake()
        if last is None or self.length_known:
            return None
        try:
            body = last()
        except Exception:
            log.exception("the app's farewell to a slow consumer failed")
            return None
        return self._body(body, False)

    def _start(self, status: int, headers: Any) -> None:
        self.status = status
        lines: list[bytes] = [status_line(status), self.conn.state.date_header()]
        length = status < 200 or status in (204, 304)  # no body, no length
        for name, value in headers:
            name = name.lower()
            if b"\n" in value or b"\r" in value or b"\n" in name or b"\r" in name:
                raise RuntimeError("invalid header in the response")
            if name == b"content-length":
                length = True
            elif name == b"connection":
                if value.lower() == b"close":
                    self.keep_alive = False
                continue
            elif name == b"transfer-encoding":
                continue
            lines.append(b"%s: %s\r\n" % (name, value))
        self.length_known = length
        self.head = b"".join(lines)

    def _finish_head(self, head: bytes, size: int, more: bool) -> bytes:
        """The head, told how the body ends: its length when the first body is
        the whole of it, else chunks (HTTP/1.1) or the close (HTTP/1.0)."""
        extra = b""
        if not self.length_known and not self.head_only:
            if not more:
                extra = b"content-length: %d\r\n" % size
            elif self.scope["http_version"] == "1.1":
                self.chunked = True
                extra = b"transfer-encoding: chunked\r\n"
            else:
                self.keep_alive = False
        if not self.keep_alive or self.more_body or self.conn.state.closing:
            # The connection ends after this response (invariant "an early answer says close", or a shutdown).
            self.keep_alive = False
            extra += b"connection: close\r\n"
        return head + extra + b"\r\n"


__all__ = ["Request"]
