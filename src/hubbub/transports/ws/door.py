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
from ..extensions import frames_gatherer, frames_sender, frames_writer
from ..problems import close_code, problem, problem_from
from .connection import Connection


class WebSocketDoor:
    """The raw ASGI endpoint of ``/v1/ws``: handshake, then a :class:`Connection`."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hub: Hub = scope["app"].state.hub
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
        conn = Connection(hub, codec, send, frames_sender(scope), frames_writer(scope),
                          principal, frames_gatherer(scope), hold, peer)
        # A connection with no subscription has no pump to notice a drain.
        _Open.add(hub, conn)
        conn.registered = hub.connections.add(
            "ws", None if principal is None else principal.subject, remote_of(scope),
            topics=conn.topic_list, close=conn.disconnect)
        hub.metrics.ws.open += 1
        try:
            await conn.serve(receive)
        finally:
            hub.metrics.ws.open -= 1
            hub.connections.remove(conn.registered)
            _Open.discard(hub, conn)

class _Open:
    """The open connections of one hub, closed with 1012 when it drains.

    One task per hub with connections waits for the drain, rather than one
    per connection (an idle connection should cost little). The entry, and
    its task, exist while the hub has open connections.
    """

    _of: dict[Hub, _Open] = {}

    def __init__(self, hub: Hub) -> None:
        self.conns: set[Connection] = set()
        self.task = asyncio.create_task(self._close_on_drain(hub), name="hubbub-ws-drain")

    async def _close_on_drain(self, hub: Hub) -> None:
        await hub.closing.wait()
        for conn in list(self.conns):
            conn.close(1012, "service restart", resume=True)

    @classmethod
    def add(cls, hub: Hub, conn: Connection) -> None:
        entry = cls._of.get(hub)
        if entry is None:
            entry = cls._of[hub] = cls(hub)
        entry.conns.add(conn)
        if hub.draining:  # it began while the handshake was answered
            conn.close(1012, "service restart", resume=True)

    @classmethod
    def discard(cls, hub: Hub, conn: Connection) -> None:
        entry = cls._of.get(hub)
        if entry is None:
            return
        entry.conns.discard(conn)
        if not entry.conns:
            entry.task.cancel()
            del cls._of[hub]


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


PATH = "/v1/ws"
#: The endpoint; :func:`hubbub.transports.app.create_app` also calls it directly.
door = WebSocketDoor()
routes: list[BaseRoute] = [WebSocketRoute(PATH, door), Route(PATH, upgrade_required)]
