"""Browsers at the doors: Host names, origins, cross-site writes and CORS (ASGI middleware).

:class:`BrowserGuard` is the outermost layer of the application
(:func:`hubbub.transports.app.create_app`), so ``hubbub serve`` and the app
mounted in another ASGI server enforce the same rules. What it refuses and
why is :mod:`hubbub.protocol.origins`; the guide is ``docs/security.md``.

CORS (the Fetch standard, §3.2 "CORS protocol") is configuration:
``[server] cors_origins`` lists the origins whose pages may call the hub.
For them, and for them only:

* a preflight (``OPTIONS`` with ``Origin`` and
  ``Access-Control-Request-Method``) is answered here, 204, on every path:
  the methods and request headers of every door, tus's included, and
  ``Access-Control-Max-Age`` (``cors_max_age``);
* every answer, errors too, carries ``Access-Control-Allow-Origin`` (the
  page's origin, never ``*``), ``Access-Control-Expose-Headers`` (what a
  script may read: ``Location``, ``Upload-Offset``, ``Tus-*``...) and, with
  ``cors_credentials``, ``Access-Control-Allow-Credentials: true``.

Other origins get no CORS header at all, so their scripts can read nothing;
their preflights go on to the doors as any ``OPTIONS`` does. Once origins
are configured, answers to requests with an ``Origin`` say ``Vary: Origin``;
requests without one (not from a page) are passed on untouched.

A refused request gets a problem document (421 or 403); a refused WebSocket
upgrade gets the same as an HTTP answer when the server offers the
``websocket.http.response`` extension (ASGI 2.4), else the 403 every server
sends for a connection closed before it was accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..core import Hub
from ..protocol import tus
from ..protocol.errors import Forbidden, HubbubError, Misdirected
from ..protocol.origins import Policy
from .auth import route_path
from .extensions import RESPOND
from .problems import problem_from

#: Methods a page on a configured origin may use (preflight answer).
ALLOW_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
#: Request headers the doors read, beyond the CORS-safelisted ones.
ALLOW_HEADERS = (
    "Authorization, Content-Type, Idempotency-Key, Last-Event-ID, X-Requested-With, "
    "X-HTTP-Method-Override, Tus-Resumable, Upload-Length, Upload-Offset, Upload-Metadata, "
    "Upload-Checksum, Upload-Defer-Length, Upload-Concat"
)
#: Answer headers a page's script may read, beyond the CORS-safelisted ones.
EXPOSE_HEADERS = (
    "Location, Retry-After, WWW-Authenticate, Upload-Offset, Upload-Length, "
    "Upload-Defer-Length, Upload-Metadata, Upload-Expires, Tus-Resumable, Tus-Version, "
    "Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm"
)
#: Probes answer whatever the Host: a load balancer asks by address.
PROBES = frozenset({"/healthz", "/readyz"})


def policy_of(hub: Hub) -> Policy:
    """The :class:`~hubbub.protocol.origins.Policy` of a hub's configuration."""
    server = hub.config.server
    return Policy(server.allowed_hosts, server.cors_origins, open_hub=not hub.auth.enabled)


class BrowserGuard:
    """ASGI middleware: the rules of :mod:`hubbub.protocol.origins`, then CORS."""

    def __init__(self, app: ASGIApp, hub: Hub) -> None:
        self.app = app
        self.hub = hub
        self.policy = policy_of(hub)
        server = hub.config.server
        self._preflight = [
            ("Access-Control-Allow-Methods", ALLOW_METHODS),
            ("Access-Control-Allow-Headers", ALLOW_HEADERS),
            ("Access-Control-Max-Age", str(int(server.cors_max_age))),
        ]
        self._credentials = server.cors_credentials

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The checks, then the next layer's awaitable (or the refusal's): a
        plain function keeps no frame of its own for a WebSocket's whole life
        (an idle connection should cost little)."""
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return self.app(scope, receive, send)
        # The three headers the rules read, in one pass over the raw list (a
        # Headers object per request cost more than the checks themselves).
        # The first of each counts, as Headers.get would have it.
        host = origin = fetch_site = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1") if host is None else host
            elif name == b"origin":
                origin = value.decode("latin-1") if origin is None else origin
            elif name == b"sec-fetch-site":
                fetch_site = value.decode("latin-1") if fetch_site is None else fetch_site
        websocket = kind == "websocket"
        try:
            if route_path(scope) not in PROBES:
                if origin is None and fetch_site is None:
                    # No page's headers: of the rules, only the Host name's can refuse.
                    self.policy.check_host(host)
                else:
                    self.policy.check(scope.get("method", "GET"), host=host, origin=origin,
                                      fetch_site=fetch_site, websocket=websocket)
        except (Forbidden, Misdirected) as exc:
            self.hub.metrics.problem(exc.code)
            if websocket:
                return _refuse_upgrade(exc, scope, receive, send)
            return self._refuse(exc, origin, scope, receive, send)
        if websocket or origin is None or not self.policy.origins:
            return self.app(scope, receive, send)
        return self._with_cors(origin, scope, receive, send)

    async def _with_cors(self, origin: str, scope: Scope, receive: Receive, send: Send) -> None:
        """An HTTP request from a page, with origins configured: the
        preflight answered here, any other answer given the CORS headers."""
        allowed = self.policy.origin_allowed(origin)
        if (allowed and scope["method"] == "OPTIONS"
                and "access-control-request-method" in Headers(scope=scope)):
            await self._answer_preflight(origin, scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._cors(MutableHeaders(scope=message), origin if allowed else None)
            await send(message)

        extensions = scope.get("extensions") or {}
        if RESPOND in extensions:
            # A whole response written by the server (hubbub.respond) would
            # not pass through send_with_cors: pages take the ASGI path.
            scope = {**scope, "extensions": {k: v for k, v in extensions.items()
                                             if k != RESPOND}}
        await self.app(scope, receive, send_with_cors)

    def _cors(self, headers: MutableHeaders, origin: str | None) -> None:
        """Put the CORS headers for ``origin`` (``None``: not allowed) on an answer."""
        for name in [k for k in headers if k.startswith("access-control-")]:
            del headers[name]  # a door's own (tus's expose list): one set, this one
        headers.add_vary_header("Origin")
        if origin is None:
            return
        headers["Access-Control-Allow-Origin"] = origin
        headers["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
        if self._credentials:
            headers["Access-Control-Allow-Credentials"] = "true"

    async def _answer_preflight(self, origin: str | None, scope: Scope, receive: Receive,
                                send: Send) -> None:
        headers = MutableHeaders(raw=[])
        self._cors(headers, origin)
        for name, value in self._preflight:
            headers[name] = value
        headers.add_vary_header("Access-Control-Request-Method")
        headers.add_vary_header("Access-Control-Request-Headers")
        await send({"type": "http.response.start", "status": 204, "headers": headers.raw})
        await send({"type": "http.response.body", "body": b""})

    async def _refuse(self, exc: HubbubError, origin: str | None, scope: Scope,
                      receive: Receive, send: Send) -> None:
        """A refusal; readable by a configured origin's page (a 421 can be one's)."""
        response = problem_from(exc, instance=scope["path"])
        if route_path(scope).startswith("/v1/uploads"):
            response.headers["Tus-Resumable"] = tus.VERSION  # as every tus answer
        if self.policy.origins:
            self._cors(response.headers,
                       origin if self.policy.origin_allowed(origin) else None)
        await response(scope, receive, send)


async def _refuse_upgrade(exc: HubbubError, scope: Scope, receive: Receive,
                          send: Send) -> None:
    """Refuse a WebSocket upgrade before accepting it."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client left first
    if "websocket.http.response" in (scope.get("extensions") or {}):
        response = problem_from(exc, instance=scope["path"])
        await send({"type": "websocket.http.response.start", "status": response.status_code,
                    "headers": response.raw_headers})
        await send({"type": "websocket.http.response.body", "body": response.body})
        return
    # ASGI: "If this is sent before the socket is accepted, the server must
    # close the connection with a HTTP 403 error code".
    await send({"type": "websocket.close", "code": 1008, "reason": exc.message[:120]})


__all__ = ["ALLOW_HEADERS", "BrowserGuard", "EXPOSE_HEADERS", "policy_of"]
