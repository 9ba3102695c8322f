"""Authentication at the doors: one credential per request or connection, one judge.

The rules are in :mod:`hubbub.core.auth`; the guide is ``docs/auth.md``.

A client sends its token (a JWT or an API key) as RFC 6750 says:

* ``Authorization: Bearer <token>`` (§2.1), on every HTTP request and on the
  WebSocket upgrade;
* ``?token=<token>`` (§2.3, "URI Query Parameter"), for browsers, whose
  ``EventSource`` and ``WebSocket`` cannot send headers, and so on SSE
  streams and the WebSocket upgrade only (:data:`QUERY_TOKEN_PATHS`):
  elsewhere it is 401, saying to use the header. The RFC warns that URLs end
  up in access logs and browser history: ``hubbub serve`` redacts tokens
  from its logs (:mod:`hubbub.protocol.redact`); give browsers short-lived
  tokens. A WebSocket can instead send its token in its first frame, the
  ``auth`` op (:mod:`hubbub.transports.ws`), which no log sees.

:class:`Authenticate` authenticates every HTTP request before routing, except
``/healthz``, ``/readyz``, ``/openapi.json`` and CORS preflights (``OPTIONS``,
which browsers send without credentials), and puts the
:class:`~hubbub.core.auth.Principal` in the ASGI scope. A request it cannot
authenticate gets ``401`` with ``WWW-Authenticate: Bearer realm="hubbub"``
(RFC 6750 §3; ``error="invalid_token"`` when a token was given) and a problem
document. Endpoints then call :func:`authorize` for each topic they touch,
before they do anything else; a refusal is ``403`` (``401`` for the anonymous
principal). The WebSocket door authenticates its upgrade itself.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Iterable

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..core import Hub
from ..core.auth import OPEN, Action, Principal
from ..protocol import tus
from ..protocol.errors import HubbubError, InvalidRequest, Unauthorized
from .problems import problem_from

#: Where the request's principal is kept in the ASGI scope.
KEY = "hubbub.principal"
#: Paths that answer without credentials: probes, the API description, and the
#: dashboard's page and assets (static; the data it shows comes from /v1).
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/"})
PUBLIC_PREFIXES = ("/dashboard/",)
REQUIRED = "authentication required: send Authorization: Bearer <token>"
#: Where ``?token=`` is taken: SSE streams and the WebSocket (what browsers
#: open without headers); every other request can send ``Authorization``.
QUERY_TOKEN_PATHS = re.compile(r"/v1/(?:ws|events|(?:topics|jobs)/[^/]+/events)")


def credentials(scope: Scope) -> tuple[str | None, str | None]:
    """The ``Authorization`` header and the ``token`` query parameter, as given.

    Raises:
        InvalidRequest: ``token`` is given more than once.
    """
    authorization = Headers(scope=scope).get("authorization")
    tokens = QueryParams(scope.get("query_string", b"")).getlist("token")
    if len(tokens) > 1:
        raise InvalidRequest("token is given more than once", field="token")
    if (tokens and authorization is None
            and not QUERY_TOKEN_PATHS.fullmatch(route_path(scope))):
        raise Unauthorized("?token= is accepted on SSE streams and the WebSocket only: "
                           "send Authorization: Bearer <token>", field="token")
    return authorization, tokens[0] if tokens else None


def authenticate(hub: Hub, scope: Scope) -> Principal | None:
    """The principal of a request or upgrade; ``None``: it gave no credentials and
    anonymous clients may do nothing.

    Raises:
        Unauthorized, InvalidRequest: the credentials are bad.
    """
    if not hub.auth.enabled:
        return OPEN
    return hub.auth.authenticate(*credentials(scope))


def remote_of(scope: Scope) -> str | None:
    """The client's address as the server saw it, ``host:port`` (a proxy's, behind one)."""
    client = scope.get("client")
    if not client:
        return None
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def principal_of(request: Request) -> Principal:
    """The request's principal (authenticated once, then kept in its scope).

    Raises:
        Unauthorized: no or bad credentials.
    """
    principal: Principal | None = request.scope.get(KEY)
    if principal is None:
        principal = authenticate(request.app.state.hub, request.scope)
        if principal is None:
            raise Unauthorized(REQUIRED)
        request.scope[KEY] = principal
    return principal


def authorize(request: Request, action: Action, topics: Iterable[str], *,
              field: str = "topic") -> Principal:
    """Refuse the request unless its principal may do ``action`` on every topic.

    Topics (names or patterns) are validated first, so bad input is 400.

    Raises:
        Unauthorized, Forbidden, InvalidTopic.
    """
    principal = principal_of(request)
    hub: Hub = request.app.state.hub
    hub.auth.check_all(principal, action, topics, field=field)
    return principal


def within_lifetime(hub: Hub, principal: Principal | None, seconds: float) -> float:
    """``seconds`` (a wait, a timeout), cut to what is left of ``principal``'s
    credential: nothing a request holds open outlives its token."""
    life = None if principal is None else hub.auth.lifetime(principal)
    return seconds if life is None else min(seconds, life)


def route_path(scope: Scope) -> str:
    """The path within this application (less a mount's ``root_path``), as
    Starlette's router matches it."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root):len(root) + 1] == "/":
        return path[len(root):]
    return path


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class Authenticate:
    """ASGI middleware: authenticate every HTTP request that needs it, once."""

    def __init__(self, app: ASGIApp, hub: Hub) -> None:
        self.app = app
        self.hub = hub

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The next layer's awaitable, or the authenticating one's: a plain
        function keeps no frame of its own for a WebSocket's whole life."""
        if (scope["type"] != "http" or not self.hub.auth.enabled
                or scope["method"] == "OPTIONS" or _public(route_path(scope))):
            return self.app(scope, receive, send)
        return self._authenticated(scope, receive, send)

    async def _authenticated(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            principal = authenticate(self.hub, scope)
            if principal is None:
                raise Unauthorized(REQUIRED)
        except HubbubError as exc:
            path = route_path(scope)
            response = problem_from(exc, instance=scope["path"])
            if path.startswith("/v1/uploads"):
                response.headers["Tus-Resumable"] = tus.VERSION  # as every tus answer
            await response(scope, receive, send)
            return
        scope[KEY] = principal
        await self.app(scope, receive, send)


__all__ = ["KEY", "QUERY_TOKEN_PATHS", "Action", "Authenticate", "authenticate", "authorize",
           "credentials", "principal_of", "route_path", "within_lifetime"]
