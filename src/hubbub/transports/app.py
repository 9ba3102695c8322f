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
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..config import Config
from ..core import Hub
from ..engines import open_engine
from ..errors import HubbubError
from .problems import problem, problem_from

log = logging.getLogger("hubbub")


class _StartHub:
    """ASGI middleware that opens the hub before the first request (mounted use)."""

    def __init__(self, app: Any, hub: Hub) -> None:
        self.app = app
        self.hub = hub
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and not self.hub._started:
            async with self._lock:
                await self.hub.start()
        await self.app(scope, receive, send)


async def _hubbub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HubbubError)
    return problem_from(exc, instance=request.url.path)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    return problem(
        exc.status_code, str(exc.detail), str(exc.detail), code=code,
        instance=request.url.path, headers=dict(exc.headers or {}),
    )


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return problem(500, "Internal error", "internal error", code="internal")


def create_app(
    store: str | Hub = "memory://",
    config: Config | None = None,
    *,
    websocket: bool = True,
) -> Starlette:
    """Build the hubbub ASGI application.

    Args:
        store: a store URL (``memory://``, ``sqlite:///PATH``) or a ready :class:`Hub`.
        config: per-namespace settings; defaults apply when omitted.
        websocket: serve ``/v1/ws`` (turn off to act as a hub behind a proxy
            that refuses WebSockets).
    Returns:
        A Starlette application; its hub is ``app.state.hub``.
    """
    from . import groups, http, requests, sse, ws

    hub = store if isinstance(store, Hub) else Hub(open_engine(store), config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    routes = [*http.routes, *sse.routes, *groups.routes, *requests.routes]
    if websocket:
        routes.extend(ws.routes)
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
    app.add_middleware(_StartHub, hub=hub)
    return app
