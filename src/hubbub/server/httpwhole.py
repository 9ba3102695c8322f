"""uvicorn's httptools protocol plus one ASGI extension: a whole response in one write.

``hubbub serve`` (:func:`hubbub.server.serve`) runs uvicorn with
:class:`WholeResponseProtocol` as its ``http`` protocol. Mounted in someone
else's server, the hub runs on whatever protocol that server uses, and the
doors fall back to plain ASGI responses; both paths send the same response.

Theory of operation
-------------------
Through plain ASGI a response costs two events (``http.response.start`` and
``http.response.body``), each passed down every middleware's ``send``
wrapper, and two ``transport.write`` calls: the head, then the body, so two
system calls and two TCP segments. Some answers go out in crowds: one
publish answers every long poll waiting on its topic (thousands, with the
same body). This protocol offers ``scope["extensions"]["hubbub.respond"]``,
a :class:`Responder`:

* ``respond(scope, status, headers, body)`` writes the status line, the server's
  default headers (``date``, ``server``), ``headers`` (already encoded
  lines), ``content-length`` and ``body`` with one ``transport.write``, and
  completes the request as uvicorn's own ``send`` does (keep-alive, the
  next pipelined request, the access log);
* ``watch(scope, gone)`` has ``gone()`` called if the client disconnects before the
  response, so a waiting request needs no task reading ``receive()``.

Rule 1. ``respond`` writes only a response that has not started; it returns
        ``False`` and writes nothing when the response started, the client is
        gone, the request is ``HEAD`` or waits behind another (pipelined), or
        the transport's buffer is full: then send through ASGI, which waits.
Rule 2. After ``respond`` the application must send nothing more through
        ASGI; it returns when it likes (uvicorn sees a complete response).
Rule 3. ``gone`` is called at most once, from the protocol's
        ``connection_lost``, and only while watched and unanswered.
Rule 4. What follows a response in uvicorn (the request's ``receive`` sees
        the end, the connection reads its next request) happens once every
        response of the loop pass is written, in one callback.
Rule 5. :func:`respond_all` answers a crowd with one response in three
        passes: which requests may take it now (Rule 1) and their bytes; then
        every write, back to back, with the garbage collector held off (many
        are made over two threads, :mod:`hubbub.server.writes`); then
        each response's own follow-up (the access log, a connection's close,
        Rule 4's queue). The last of ten thousand clients waits for ten
        thousand system calls, not for the bookkeeping of the nine thousand
        before it, nor for a collection. Writes in a loop of their own are
        cheaper, too: with 10,000 polls, 6-10 us a write against 11-17 us
        when each came between its request's own Python work (the kernel's
        data for each socket and the Python objects of each request, all
        cold, no longer evict each other between two writes).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from ..loop.passes import PerPass
from ..transports.extensions import RESPOND, Whole
from .writes import write_all


class Responder:
    """The ``hubbub.respond`` extension of one connection (Rules 1 to 3).

    One per connection, not per request (a request's objects would hold each
    other in a reference cycle, left to the garbage collector): each call
    names the request by its scope.
    """

    __slots__ = ("_protocol", "_gone")

    def __init__(self, protocol: WholeResponseProtocol) -> None:
        self._protocol = protocol
        self._gone: Callable[[], None] | None = None

    def _cycle(self, scope: object) -> RequestResponseCycle | None:
        # The request whose application runs (HTTP/1.1 answers one at a time).
        cycle = self._protocol.running
        return cycle if cycle is not None and cycle.scope is scope else None

    def respond(self, scope: object, status: int, headers: bytes, body: bytes) -> bool:
        """Write the whole response to the request of ``scope`` now (Rule 1);
        ``False`` if it cannot go this way.

        ``headers`` are encoded header lines, each ending with CRLF, without
        ``content-length`` (added here) and the server's defaults.
        """
        cycle = self._take(scope)
        if cycle is None:
            return False
        cycle.transport.write(_response(status, cycle.default_headers, headers, body,
                                        cycle.keep_alive))
        self._follow_up(cycle, status)
        return True

    def _take(self, scope: object) -> RequestResponseCycle | None:
        """The request of ``scope``, marked answered, if a whole response may go
        to it now (Rule 1); else ``None``, and nothing changed."""
        cycle = self._cycle(scope)
        if (cycle is None or cycle.response_started or cycle.disconnected
                or cycle.flow.write_paused or cycle.scope["method"] == "HEAD"):
            return None
        self._gone = None
        cycle.response_started = cycle.response_complete = True
        cycle.waiting_for_100_continue = False
        return cycle

    def _follow_up(self, cycle: RequestResponseCycle, status: int) -> None:
        """What follows the write of a whole response: the access log, the end of
        a connection that does not keep alive, then uvicorn's own follow-up
        at the end of the pass (Rule 4)."""
        if cycle.access_log:
            cycle.access_logger.info(
                '%s - "%s %s HTTP/%s" %d', get_client_addr(cycle.scope), cycle.scope["method"],
                get_path_with_query_string(cycle.scope), cycle.scope["http_version"], status)
        if not cycle.keep_alive:
            cycle.transport.close()
        # uvicorn replaces on_response with a no-op once the application
        # returns, which it may do before the completions run: keep the real one.
        _completions.add((cycle, cycle.on_response), self._protocol.loop)

    def watch(self, scope: object, gone: Callable[[], None] | None) -> bool:
        """Call ``gone()`` if the client of ``scope``'s request leaves before its
        response (Rule 3); ``None`` stops watching.

        Returns ``False``, watching nothing, if the client is gone already.
        """
        self._gone = None
        if gone is None:
            return True
        cycle = self._cycle(scope)
        if cycle is None or cycle.disconnected or cycle.transport.is_closing():
            return False
        self._gone = gone
        return True

    def respond_all(self, requests: Sequence[Whole], status: int, headers: bytes,
                    body: bytes) -> list[bool]:
        """:func:`respond_all` (the contract's spelling)."""
        return respond_all(requests, status, headers, body)

    def _lost(self) -> None:
        gone, self._gone = self._gone, None
        cycle = self._protocol.running
        if gone is not None and cycle is not None and not cycle.response_complete:
            gone()


def respond_all(requests: Sequence[Whole], status: int, headers: bytes,
                body: bytes) -> list[bool]:
    """:meth:`Responder.respond` for many requests with one response (Rule 5):
    whether each got it (``False``: send it through ASGI, as for ``respond``)."""
    sent = [False] * len(requests)
    taken: list[Responder] = []
    cycles: list[RequestResponseCycle] = []
    transports: list[Any] = []
    data: list[bytes] = []  # mostly one bytes object many times (see _response)
    for i, request in enumerate(requests):
        # Every request of this server carries this module's Responder.
        responder = cast(Responder, request.respond)
        cycle = responder._take(request.scope)
        if cycle is not None:
            taken.append(responder)
            cycles.append(cycle)
            transports.append(cycle.transport)
            data.append(_response(status, cycle.default_headers, headers, body,
                                  cycle.keep_alive))
            sent[i] = True
    collecting = gc.isenabled()
    gc.disable()  # no collection between the writes: the last client waits for it
    try:
        write_all(transports, data)
    finally:
        if collecting:
            gc.enable()
    for responder, cycle in zip(taken, cycles, strict=True):
        responder._follow_up(cycle, status)
    return sent


def _complete(done: list[tuple[RequestResponseCycle, Callable[[], None]]]) -> None:
    for cycle, on_response in done:
        cycle.message_event.set()
        on_response()


#: What uvicorn does once a response is sent (wake the request's ``receive``,
#: then ``on_response``: the keep-alive timer, reading the next request), done
#: for every response written in a loop pass in one callback, after them all
#: (Rule 4): a publish that answers ten thousand long polls writes them all first.
_completions: PerPass[tuple[RequestResponseCycle, Callable[[], None]]] = PerPass(_complete)


_defaults: tuple[list[tuple[bytes, bytes]] | None, bytes] = (None, b"")


def _encoded(defaults: list[tuple[bytes, bytes]]) -> bytes:
    """The server's default headers as lines (the list changes once a second: the date)."""
    global _defaults
    if _defaults[0] is not defaults:
        _defaults = (defaults, b"".join(b"%s: %s\r\n" % pair for pair in defaults))
    return _defaults[1]


_last: tuple[int, list[tuple[bytes, bytes]], bytes, bytes, bool, bytes] | None = None


def _response(status: int, defaults: list[tuple[bytes, bytes]], headers: bytes, body: bytes,
              keep_alive: bool) -> bytes:
    """The bytes of a whole response.

    The last one is kept: the polls a publish answers get the same page, and
    the server's default headers (the date) change once a second, so the
    same bytes serve a whole crowd.
    """
    global _last
    last = _last
    if (last is not None and last[3] is body and last[1] is defaults and last[2] is headers
            and last[0] == status and last[4] is keep_alive):
        return last[5]
    data = b"%s%s%scontent-length: %d\r\n%s\r\n%s" % (
        STATUS_LINE[status], _encoded(defaults), headers, len(body),
        b"" if keep_alive else b"connection: close\r\n", body)
    _last = (status, defaults, headers, body, keep_alive, data)
    return data


class WholeResponseProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol offering the ``hubbub.respond`` extension."""

    _responder: Responder | None = None
    #: The request whose application runs: the last one started (uvicorn
    #: starts a connection's next request once this one is answered).
    running: RequestResponseCycle | None = None

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self.running = cycle
        super()._start_asgi_task(cycle, app)

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        # uvicorn made the request's cycle (and scheduled or queued its task,
        # which has not run yet); a WebSocket upgrade makes none.
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:
            responder = self._responder
            if responder is None:
                responder = self._responder = Responder(self)
            scope: dict[str, Any] = self.scope  # type: ignore[assignment]
            scope.setdefault("extensions", {})[RESPOND] = responder

    def connection_lost(self, exc: Exception | None) -> None:
        if self._responder is not None:
            self._responder._lost()
        super().connection_lost(exc)


__all__ = ["Responder", "WholeResponseProtocol", "respond_all"]
