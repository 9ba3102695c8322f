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

Rule 1. Every frame goes out under one lock, so frames never interleave and a
        pump sends a whole batch per lock. Message frames are the bytes cached
        on the :class:`~hubbub.protocol.message.Message` (``ws_json()`` or
        ``ws_msgpack()``): one serialization per message for every subscriber.
Rule 2. A pump records the cursor of each message once its frame is handed to
        the server, so the cursor the hub hands back when it closes the
        connection is exactly what the client received: nothing lost, nothing
        twice.
Rule 3. A slow client backs up only its own pump (the server's ``send``
        waits while the socket's buffer is full); its subscription's bounded
        buffer then overflows and cuts it off (:class:`SlowConsumer`): the hub
        closes with 4008 and the resume cursor. The publisher and the other
        subscribers never wait for it.
Rule 4. A deliberate close sets ``closing`` first: from then on nothing but the
        final ``close`` frame (the cursor of every subscription) and the close
        frame itself is sent. A drained hub closes with 1012, a slow consumer
        with 4008, an unanswerable frame with the code its error maps to in
        :mod:`hubbub.transports.problems`, an internal error with 1011.
Rule 5. An op that fails with a :class:`~hubbub.protocol.errors.HubbubError` is answered
        with an ``err`` frame and the connection carries on; nothing a peer
        sends ends the reader except by a deliberate close.
Rule 6. On a server with the ``hubbub.frames`` writer (``hubbub serve``), a
        live subscription with nothing to send *parks* instead of keeping a
        pump task waiting (:meth:`Subscription.park`): the fan-out's wake-up
        schedules one ``_flush`` per connection and loop pass, which writes
        every ready frame in one write when that needs no wait (the lock is
        free, the socket's buffer below its mark). Anything else (a full
        socket, a busy lock, an end, an error, a cut-off) starts a pump again,
        which handles it by Rules 1 to 4 and parks when it is done. An idle
        subscription then holds no task, and a delivery costs no task switch.

Consumer-group subscriptions (``sub`` with ``group``) and their ``ack``,
``nack`` and ``extend`` ops are carried out by
:class:`hubbub.transports.ws.groups.GroupFeeds`, one per connection: a pump per
group subscription pulls while its window has room and sends under the same
lock (Rules 1 and 4 hold for them too); when the connection ends, what it did
not settle is nacked so that other workers get it at once.

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
(Rule 4), so the client can come back with a fresh token and lose nothing.
"""

from .connection import AUTH_TIMEOUT, DISCONNECTED, MAX_REQUESTS, MAX_SUBSCRIPTIONS, Connection
from .delivery import Room
from .door import PATH, WebSocketDoor, upgrade_required

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
