"""The ASGI application: every door of one :class:`~hubbub.core.Hub`.

Stand-alone::

    app = create_app("sqlite:///hubbub-data/hub.db")

Mounted in a FastAPI or Starlette application (the hub opens its store on
first use, or when the parent's lifespan calls ``hub_app.state.hub.start()``)::

    hub_app = create_app("memory://")
    app.mount("/hub", hub_app)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..config import Config
from ..core import Hub
from ..protocol import tus
from ..protocol.errors import HubbubError
from .auth import Authenticate, route_path
from .browsers import BrowserGuard
from .polling import Pages
from .problems import problem, problem_from

log = logging.getLogger("hubbub")


class _StartHub:
    """ASGI middleware that opens the hub before the first request (mounted use),
    and hands WebSocket connections to ``ws_path`` straight to ``ws``.

    The WebSocket door is raw ASGI and answers its own errors, so the
    exception and routing layers below would only add coroutine frames, which
    a connection keeps for its whole life (about 2 KB of an idle one's memory).
    For the same reason this layer, :class:`~hubbub.transports.auth.Authenticate`
    and :class:`~hubbub.transports.browsers.BrowserGuard` are plain functions
    that return the next layer's awaitable rather than awaiting it.
    """

    def __init__(self, app: Any, hub: Hub, ws: ASGIApp | None = None,
                 ws_path: str = "") -> None:
        self.app: ASGIApp = app
        self.hub = hub
        self.ws = ws
        self.ws_path = ws_path
        self._lock = asyncio.Lock()

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The next layer's awaitable: a plain function keeps no frame of its
        own for a WebSocket's whole life."""
        if scope["type"] in ("http", "websocket") and not self.hub._started:
            return self._start_then(scope, receive, send)
        return self._next(scope)(scope, receive, send)

    async def _start_then(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self._lock:
            await self.hub.start()
        await self._next(scope)(scope, receive, send)

    def _next(self, scope: Scope) -> ASGIApp:
        if scope["type"] == "websocket" and self.ws is not None and route_path(scope) == self.ws_path:
            return self.ws
        return self.app


def _count(request: Request, code: str) -> None:
    """Count a problem answer by its code (``hubbub_http_problems_total``)."""
    request.app.state.hub.metrics.problem(code)


async def _hubbub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubbubError)
    _count(request, exc.code)
    return problem_from(exc, instance=request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    _count(request, code)
    headers = dict(exc.headers or {})
    if request.url.path.startswith("/v1/uploads"):
        headers["Tus-Resumable"] = tus.VERSION  # every tus answer says its version
    return problem(
        exc.status_code, str(exc.detail), str(exc.detail), code=code,
        instance=request.url.path, headers=headers,
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    _count(request, "internal")
    return problem(500, "Internal error", "internal error", code="internal")


def create_app(
    store: str | Hub = "memory://",
    config: Config | None = None,
    *,
    websocket: bool = True,
    request_ids: bool = False,
) -> Starlette:
    """Build the hubbub ASGI application.

    Args:
        store: a store URL (``memory://``, ``sqlite:///PATH``) or a ready :class:`Hub`.
        config: per-namespace settings; defaults apply when omitted.
        websocket: serve ``/v1/ws`` (turn off to act as a hub behind a proxy
            that refuses WebSockets).
        request_ids: give each request an id, echoed as ``X-Request-Id`` and
            carried by its log records (:mod:`hubbub.transports.requestid`).
    Returns:
        A Starlette application; its hub is ``app.state.hub``.
    """
    from . import dashboard, groups, http, jobs, metrics, presence, requests, sse, uploads, ws
    from .admin import routes as admin_routes

    hub = store if isinstance(store, Hub) else Hub.open(store, config)
    door = ws.WebSocketDoor(hub) if websocket else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    routes = [*http.routes, *sse.routes, *groups.routes, *requests.routes, *presence.routes,
              *uploads.routes, *jobs.routes, *metrics.routes, *dashboard.routes,
              *admin_routes]
    if door is not None:
        routes.extend(door.routes)
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            HubbubError: _hubbub_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.hub = hub
    app.state.pages = Pages()
    app.add_middleware(_StartHub, hub=hub, ws=door, ws_path=ws.PATH)
    # Outermost: a request is authenticated before anything else (docs/auth.md).
    app.add_middleware(Authenticate, hub=hub)
    # Outside that: Host names, origins and CORS, so a refused page learns
    # nothing, and preflights (no credentials) are answered (docs/security.md).
    app.add_middleware(BrowserGuard, hub=hub)
    if request_ids:  # outside even that: a refused request's records carry its id
        from .requestid import RequestId

        app.add_middleware(RequestId)
    return app
