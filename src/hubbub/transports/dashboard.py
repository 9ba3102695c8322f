"""The dashboard at ``GET /``: one HTML page, a stylesheet and a script, served from the package.

No build step and nothing from elsewhere (the page works offline): the files
are in ``transports/static/`` and are read once. The page is itself a client
of the hub's doors: it polls ``/v1/stats`` and ``/v1/topics``, and follows a
chosen topic over SSE (``/v1/events``) or the WebSocket (``/v1/ws``).

Rules:

1. Every URL the page uses is relative to a ``<base>`` the server writes
   from the request's ``root_path``, so the dashboard works where the hub is
   mounted (``app.mount("/hub", hub_app)`` serves it at ``/hub/``).
2. The page shows what the hub holds, and topics carry anything: the script
   puts text in the page with ``textContent`` only, never as markup, and the
   Content-Security-Policy allows scripts and styles from the hub itself only.
"""

from __future__ import annotations

import functools
import html
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..protocol.errors import NotFound

_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; base-uri 'self'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    # The page's own requests carry ?token= (SSE): no Referer tells another site.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers without CSP 2
}


@functools.cache
def _read(name: str) -> str:
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


async def index(request: Request) -> Response:
    root = request.scope.get("root_path", "").rstrip("/")
    page = _read("index.html").replace("{{base}}", html.escape(root + "/", quote=True))
    return Response(page, media_type="text/html; charset=utf-8", headers=_HEADERS)


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    # Only the files listed: the route parameter never reaches the file system.
    media_type = _FILES.get(name)
    if media_type is None:
        raise NotFound("no such dashboard file", field="name")
    return Response(_read(name), media_type=media_type, headers=_HEADERS)


routes: list[BaseRoute] = [
    Route("/", index, methods=["GET"]),
    Route("/dashboard/{name}", asset, methods=["GET"]),
]
