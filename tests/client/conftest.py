"""Fixtures for the client tests: a real hub behind a "proxy" that refuses doors.

:class:`RefusingProxy` is a small ASGI wrapper in front of the hub's app, as a
reverse proxy that does not pass WebSockets or event streams would be: it
answers a WebSocket upgrade with ``403`` (no problem document, as nginx or a
corporate proxy would), an event-stream path with ``404``, a long poll (a
``wait`` query) with ``405``, any poll with ``404``. The hub behind it is real, on a real socket.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from hubbub.config import Config
from hubbub.transports.app import create_app
from tests.conftest import HubServer, serve_app, store_url


class RefusingProxy:
    """Pass everything to ``app`` except the doors it is told to refuse."""

    def __init__(self, app: Any, *, ws: bool = False, sse: bool = False,
                 longpoll: bool = False, poll: bool = False) -> None:
        self.app, self.ws, self.sse, self.longpoll, self.poll = app, ws, sse, longpoll, poll
        #: How many requests were refused, per door.
        self.refused = {"ws": 0, "sse": 0, "longpoll": 0, "poll": 0}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket" and self.ws:
            self.refused["ws"] += 1
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1000})  # uvicorn answers 403
            return
        if scope["type"] == "http":
            path, query = scope["path"], scope.get("query_string", b"")
            if self.sse and path.endswith("/events"):
                self.refused["sse"] += 1
                return await _plain(send, 404, b"not found")
            if self.longpoll and b"wait=" in query:
                self.refused["longpoll"] += 1
                return await _plain(send, 405, b"method not allowed")
            if self.poll and path.endswith("/messages"):
                self.refused["poll"] += 1
                return await _plain(send, 404, b"not found")
        await self.app(scope, receive, send)


async def _plain(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


Proxied = Callable[..., Awaitable[tuple[HubServer, RefusingProxy]]]


@pytest.fixture
async def proxied_hub(engine: str, tmp_path: Path) -> AsyncIterator[Proxied]:
    """A factory: ``await proxied_hub(websocket=True, ws=..., sse=..., longpoll=...)``."""
    servers: list[HubServer] = []

    async def start(*, websocket: bool = True, config: Config | None = None,
                    **refuse: bool) -> tuple[HubServer, RefusingProxy]:
        where = tmp_path / str(len(servers))
        where.mkdir(exist_ok=True)
        hub_app = create_app(store_url(engine, where), config, websocket=websocket)
        proxy = RefusingProxy(hub_app, **refuse)
        srv = await serve_app(proxy, hub_app)
        servers.append(srv)
        return srv, proxy

    yield start
    for srv in servers:
        with contextlib.suppress(Exception):
            await srv.stop()
