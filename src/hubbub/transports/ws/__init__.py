"""The WebSocket door: ``GET /v1/ws`` (RFC 6455), ops in JSON or MessagePack frames.

The protocol is in ``docs/websocket.md``; frames are decoded by the pure
:mod:`hubbub.protocol.wire`. This module is the raw ASGI endpoint around it: the
handshake, one reader, one pump task per subscription, and closing.

Theory of operation
-------------------
The endpoint's own task reads frames. A ``pub``, ``req``, ``reply``, ``ack``,
``nack`` or ``extend`` is handed to the connection's
:class:`~hubbub.transports.ws.pipeline.Pipeline` and the next frame is read at
once, so the ops a client keeps in flight reach the store together and share
its commits; they are still stored in the order the client sent them and
answered in that order (:mod:`hubbub.transports.ws.pipeline`). Any other op
waits until every op before it was answered, then is carried out alone. Each
subscription gets a *pump* task that drains :meth:`Subscription.next_batch`
and writes its messages.

What the door promises is stated where it is kept: how frames, cursors,
slow consumers, closing and parked subscriptions behave in
:mod:`hubbub.transports.ws.delivery` (its ``Invariants`` and ``Trade-offs``),
how an op's error is answered in :mod:`hubbub.transports.ws.connection`, and
the order of pipelined ops in :mod:`hubbub.transports.ws.pipeline`.

Modules
-------
``door``: the ASGI endpoint (handshake, refusal, 426 for plain HTTP, routes),
one :class:`WebSocketDoor` per application. ``connection``: the op reader
and its dispatch, the auth timer, publishes, subscriptions and presence. ``delivery``: what a connection sends (frames, the subscriptions'
pumps, park and flush) and the :class:`Room` its door's connections share.
``pipeline``: the ops in flight. ``requests``: request-reply (``req``,
``reply``). ``groups``: consumer-group subscriptions.

Consumer-group subscriptions (``sub`` with ``group``) and their ``ack``,
``nack`` and ``extend`` ops are carried out by
:class:`hubbub.transports.ws.groups.GroupFeeds`, one per connection: a pump per
group subscription pulls while its window has room and sends under the same
lock (:mod:`hubbub.transports.ws.delivery`'s invariants "frames never
interleave" and "closing sends only the close" hold for them too); when the
connection ends, what it did not settle is nacked so that other workers get it at once.

Request-reply (:mod:`hubbub.core.requests`): a ``req`` is published in op
order, like a ``pub`` (or refused at once with ``err`` ``no-responders``), but
its answer (the reply, or ``err`` ``responder-error`` or ``timeout``) comes
when the reply does, from a task of its own, so the connection's other ops
(a ``reply`` to some other request, say) go on meanwhile; only an ``err``
for a request that could not be published is answered in its place. A
``reply`` (with ``data``, or ``error`` for a responder that failed) is
answered like a ``pub``. When the connection ends, its waiting requests are
given up: replies to them are refused from then on.

Presence (:mod:`hubbub.core.presence`): the connection has one
:class:`~hubbub.core.presence.Member`; a ``sub`` that names topics with
presence joins them before its ``ok`` (which then carries the connection's
``conn`` id), an ``unsub`` leaves them, and the end of the connection
leaves whatever is left.

Authentication (:mod:`hubbub.core.auth`, ``docs/auth.md``): the upgrade is
authenticated once, by ``Authorization: Bearer`` or ``?token=``; bad
credentials refuse it with 401 (a close with 4401 where the server cannot
answer an upgrade with a response). An upgrade with no credentials, on a hub
that lets no anonymous client in, is accepted only to hear an ``auth`` op: any
other first op, no ``auth`` within ``AUTH_TIMEOUT`` seconds or a refused token
closes the connection with 4401 and the reason. Each op is then authorized
per topic: a ``pub``, ``req`` or ``sub`` on a topic the token does not allow
is answered with ``err`` (code ``forbidden``) and the connection carries on.
When the token expires the connection closes with 4401 and the resume cursors
(:mod:`hubbub.transports.ws.delivery`, invariant "closing sends only the
close"), so the client can come back with a fresh token and lose nothing.
"""

from .connection import AUTH_TIMEOUT, DISCONNECTED, MAX_SUBSCRIPTIONS, Connection
from .delivery import Room
from .door import PATH, WebSocketDoor, upgrade_required
from .requests import MAX_REQUESTS

__all__ = [
    "AUTH_TIMEOUT",
    "DISCONNECTED",
    "MAX_REQUESTS",
    "MAX_SUBSCRIPTIONS",
    "PATH",
    "Connection",
    "Room",
    "WebSocketDoor",
    "upgrade_required",
]
