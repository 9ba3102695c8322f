"""The ``hubbub.respond`` extension (:mod:`hubbub.transports.extensions`) of
the HTTP/1.1 protocol: a whole response in one write, to one request or a crowd.

Theory of operation
-------------------
Through plain ASGI a response costs two events (``http.response.start`` and
``http.response.body``), each passed down every middleware's ``send``
wrapper. Some answers go out in crowds: one publish answers every long poll
waiting on its topic (thousands, with the same body). A :class:`Responder`
(one per connection, not per request: a request's objects would hold each
other in a reference cycle, left to the garbage collector) writes the
status line, the server's own headers (``date``, ``server``), the app's
header lines, ``content-length`` and the body with one write.

Invariants
----------
"only an unstarted response": ``respond`` writes only a response that has
    not started; it returns ``False`` and writes nothing when the response
    started, the client is gone, the request is ``HEAD`` or waits behind
    another (pipelined), or the socket's buffer is full: then the app sends
    through ASGI, which waits.
"nothing after respond": After ``respond`` the app must send nothing more
    through ASGI.
"gone called once": ``gone`` is called at most once, from
    ``connection_lost``, and only while watched and unanswered.
"follow-ups after the writes": What follows a response (the request's
    ``receive`` sees the end, the connection reads its next request or
    starts its keep-alive wait) happens once every response of the loop pass
    is written, in one callback (:attr:`ServerState.completions`).

Trade-offs
----------
"a crowd in three passes": :func:`respond_all` answers a crowd in three
    passes: which requests may take it now (invariant "only an unstarted
    response") and their bytes; then every write, back to back, with the
    garbage collector held off (many are made over two threads,
    :mod:`hubbub.server.writes`); then each response's own follow-up. The last of ten thousand clients waits for ten thousand
        system calls, not for the bookkeeping of the nine thousand before it,
        nor for a collection. Writes in a loop of their own are cheaper, too:
        with 10,000 polls, 6-10 us a write against 11-17 us when each came
        between its request's own Python work.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Protocol, cast

from ..transports.extensions import Whole
from .asgi import whole_response
from .cycle import Request
from .state import ServerState
from .writes import Target, write_all


class Connection(Target, Protocol):
    """What the extension uses of its HTTP/1.1 connection
    (:class:`hubbub.server.http1.HttpProtocol`, which imports this module):
    a :class:`~hubbub.server.writes.Target` of a crowd's writes, and more."""

    @property
    def state(self) -> ServerState: ...

    @property
    def current(self) -> Request | None: ...

    @property
    def write_paused(self) -> bool: ...

    def write(self, data: bytes) -> None: ...


class Responder:
    """The ``hubbub.respond`` extension of one HTTP/1.1 connection (its invariants)."""

    __slots__ = ("conn", "_gone")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._gone: Callable[[], None] | None = None

    def _take(self, scope: object, status: int) -> Request | None:
        """The request of ``scope``, marked answered, if a whole response may go
        to it now (invariant "only an unstarted response"); else ``None``, and nothing changed."""
        conn = self.conn
        request = conn.current
        if (request is None or request.scope is not scope or request.started or request.gone
                or conn.write_paused or request.head_only or conn.transport.is_closing()):
            return None
        self._gone = None
        request.started = request.complete = True
        request.expect_100 = False
        request.status = status
        return request

    def _bytes(self, request: Request, status: int, headers: bytes, body: bytes) -> bytes:
        """The response's bytes; the last ones are kept on the server's state: the
        polls a publish answers get the same page, and the date changes once a
        second, so the same bytes serve a whole crowd."""
        state = self.conn.state
        defaults = state.date_header()
        keep = request.keep_alive and not request.more_body and not state.closing
        last = state.last_response
        if (last is not None and last[3] is body and last[1] is defaults
                and last[2] is headers and last[0] == status and last[4] is keep):
            return last[5]
        data = whole_response(status, defaults, headers, body, keep)
        state.last_response = (status, defaults, headers, body, keep, data)
        return data

    def respond(self, scope: object, status: int, headers: bytes, body: bytes) -> bool:
        """Write the whole response to the request of ``scope`` now (invariant
        "only an unstarted response");
        ``False`` if it cannot go this way."""
        request = self._take(scope, status)
        if request is None:
            return False
        self.conn.write(self._bytes(request, status, headers, body))
        self.conn.state.counts.whole_responses += 1
        self._follow_up(request)
        return True

    def _follow_up(self, request: Request) -> None:
        # After every write of this loop pass (invariant "follow-ups after the writes").
        state = self.conn.state
        state.completions.add(request, state.loop)

    def watch(self, scope: object, gone: Callable[[], None] | None) -> bool:
        """Call ``gone()`` if the client of ``scope``'s request leaves before its
        response (invariant "gone called once"); ``None`` stops watching. ``False`` if it is gone already."""
        self._gone = None
        if gone is None:
            return True
        request = self.conn.current
        if (request is None or request.scope is not scope or request.gone
                or self.conn.transport.is_closing()):
            return False
        self._gone = gone
        return True

    def respond_all(self, requests: Sequence[Whole], status: int, headers: bytes,
                    body: bytes) -> list[bool]:
        """:func:`respond_all` (the contract's spelling)."""
        return respond_all(requests, status, headers, body)

    def lost(self) -> None:
        """The connection is gone (invariant "gone called once")."""
        gone, self._gone = self._gone, None
        request = self.conn.current
        if gone is not None and request is not None and not request.complete:
            gone()


def respond_all(requests: Sequence[Whole], status: int, headers: bytes,
                body: bytes) -> list[bool]:
    """:meth:`Responder.respond` for many requests with one response (trade-off
    "a crowd in three passes"):
    whether each got it (``False``: send it through ASGI, as for ``respond``)."""
    sent = [False] * len(requests)
    taken: list[Request] = []
    conns: list[Connection] = []
    data: list[bytes] = []  # mostly one bytes object many times (see Responder._bytes)
    for i, item in enumerate(requests):
        # Every request of this server carries this module's Responder.
        responder = cast(Responder, item.respond)
        request = responder._take(item.scope, status)
        if request is not None:
            taken.append(request)
            conns.append(responder.conn)
            data.append(responder._bytes(request, status, headers, body))
            sent[i] = True
    if not taken:
        return sent
    state = taken[0].conn.state
    collecting = gc.isenabled()
    gc.disable()  # no collection between the writes: the last client waits for it
    try:
        write_all(conns, data, state.helper)
    finally:
        if collecting:
            gc.enable()
    state.counts.whole_responses += len(taken)
    state.counts.crowd_responses += len(taken)
    state.completions.extend(taken, state.loop)
    return sent


__all__ = ["Responder", "respond_all"]
