"""The WebSocket door's endpoint: ``GET /v1/ws``, its handshake, and its routes.

:class:`WebSocketDoor` is the raw ASGI endpoint: it negotiates the
subprotocol, authenticates the upgrade (refusing it with a problem document
where the server allows), accepts, and hands the socket to a
:class:`~hubbub.transports.ws.connection.Connection`; a plain HTTP ``GET``
gets 426 (:func:`upgrade_required`).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from ...core import Hub
from ...protocol import wire
from ...protocol.errors import HubbubError, Unavailable
from ..auth import authenticate, remote_of
from ..extensions import frames_farewell, frames_gatherer, frames_sender, frames_writer
from ..problems import close_code, problem, problem_from
from .connection import Connection
from .delivery import Room

PATH = "/v1/ws"


class WebSocketDoor:
    """The raw ASGI endpoint of ``/v1/ws`` for one hub: handshake, then a
    :class:`Connection`.

    Built once per application (:func:`hubbub.transports.app.create_app`),
    it owns what the hub's connections share: the :class:`Room` of their
    deliveries, and the open connections, closed with 1012 when the hub
    drains. One task waits for the drain while the hub has open
    connections, rather than one per connection (an idle connection should
    cost little).
    """

    __slots__ = ("hub", "room", "routes", "_open", "_drain")

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.room = Room(hub.metrics.ws.sent)
        #: Its routes: the endpoint, and 426 for a plain ``GET``.
        self.routes: list[BaseRoute] = [WebSocketRoute(PATH, self), Route(PATH, upgrade_required)]
        self._open: set[Connection] = set()
        #: The task that closes them when the hub drains, while there are any.
        self._drain: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub = self.hub
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            codec = wire.negotiate(scope.get("subprotocols") or [])
            if hub.draining:
                raise Unavailable("hub is shutting down")
            # None: no credentials; the connection waits for an auth op.
            principal = authenticate(hub, scope)
            client = scope.get("client")
            peer = client[0] if client else None
            hold = None if principal is None else hub.tally.hold(principal, peer)
        except HubbubError as exc:
            await _refuse(scope, send, exc)
            return
        try:
            await send({"type": "websocket.accept", "subprotocol": codec.subprotocol})
        except BaseException:
            if hold is not None:
                hold.release()
            raise
        conn = Connection(hub, self.room, codec, send, frames_sender(scope),
                          frames_writer(scope), principal, frames_gatherer(scope), hold, peer)
        if (farewell := frames_farewell(scope)) is not None:
            farewell(conn.farewell)  # the server says it when it cuts a slow consumer off
        # A connection with no subscription has no pump to notice a drain.
        self._add(conn)
        conn.registered = hub.connections.add(
            "ws", None if principal is None else principal.subject, remote_of(scope),
            topics=conn.topic_list, close=conn.disconnect)
        hub.metrics.ws.open += 1
        try:
            await conn.serve(receive)
        finally:
            hub.metrics.ws.open -= 1
            hub.connections.remove(conn.registered)
            self._discard(conn)

    def _add(self, conn: Connection) -> None:
        self._open.add(conn)
        if self._drain is None:
            self._drain = asyncio.create_task(self._close_on_drain(), name="hubbub-ws-drain")
        if self.hub.draining:  # it began while the handshake was answered
            conn.close(1012, "service restart", resume=True)

    def _discard(self, conn: Connection) -> None:
        self._open.discard(conn)
        if not self._open and self._drain is not None:
            self._drain.cancel()
            self._drain = None

    async def _close_on_drain(self) -> None:
        await self.hub.closing.wait()
        for conn in list(self._open):
            conn.close(1012, "service restart", resume=True)


async def _refuse(scope: Scope, send: Send, exc: HubbubError) -> None:
    """Refuse the handshake with a problem document, where the server allows it.

    The ASGI "WebSocket Denial Response" extension lets the app answer the
    upgrade request with an HTTP response; without it, closing before accept
    makes the server answer 403.
    """
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": close_code(exc)})
        return
    response = problem_from(exc, instance=scope.get("path"))
    await send({
        "type": "websocket.http.response.start",
        "status": response.status_code,
        "headers": response.raw_headers,
    })
    await send({"type": "websocket.http.response.body", "body": response.body})


async def upgrade_required(request: Request) -> Response:
    """``GET /v1/ws`` as a plain HTTP request: 426, naming the protocol to
    upgrade to (RFC 9110 §15.5.22: "The server MUST send an Upgrade header
    field in a 426 response to indicate the required protocol(s)")."""
    return problem(426, "Upgrade Required", "this endpoint speaks WebSocket only",
                   code="upgrade-required",
                   headers={"Upgrade": "websocket", "Connection": "Upgrade"})
