"""Who may reach the hub from a browser: Host names, origins and cross-site writes (pure).

A hub with authentication off trusts whoever can open a connection to it,
which on a loopback address means the programs of the local user. A browser
is one of those programs, and it runs scripts of every page its user visits;
three rules keep those pages out (``docs/security.md``):

Host names.
    With authentication off, only loopback names are served (``localhost``,
    ``*.localhost``, ``127.0.0.0/8``, ``[::1]``), plus the names configured in
    ``[server] allowed_hosts``. A page that rebinds its own DNS name to
    127.0.0.1 still sends its own name as ``Host`` and is answered 421
    Misdirected Request (RFC 9110 §15.5.20: "the request was directed at a
    server that is unable or unwilling to produce an authoritative response
    for the target URI"). With authentication on, a token is what is trusted,
    and every name is served unless ``allowed_hosts`` lists some.

WebSocket origins.
    Browsers apply no same-origin policy to WebSockets; RFC 6455 §10.2 leaves
    it to the server: "servers that are not intended to process input from
    any web page but only for certain sites SHOULD verify the |Origin| field
    is an origin they expect". An upgrade whose ``Origin`` is neither the
    hub's own nor configured (``[server] cors_origins``) is refused (403).
    An upgrade with no ``Origin`` does not come from a browser.

Cross-site writes.
    A page may send "simple" requests (``POST`` with ``text/plain``, no
    preflight) to any origin; it cannot read the answer, but the write is
    done. A state-changing request (``POST``, ``PUT``, ``PATCH``, ``DELETE``)
    whose ``Origin`` is another (not configured) origin, or which has no
    ``Origin`` but says ``Sec-Fetch-Site: cross-site`` or ``same-site``, is
    refused (403). Requests with neither header (curl, servers, hubbub's own
    client) are not from a browser and are served as ever.

Same origin is judged by host and port, not scheme: the ``Origin``'s
``host[:port]`` (a default port left out) must be the request's ``Host``.
Behind a proxy that ends TLS, the hub sees ``http`` while the page says
``https``; the name and port are what an attacker's page cannot forge.

Everything here is pure: headers in, a verdict out; the ASGI middleware that
applies it is :mod:`hubbub.transports.browsers`.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from .errors import Forbidden, Misdirected

#: Methods that change state (RFC 9110 §9.2.1: the others are "safe").
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: ``Sec-Fetch-Site`` values that say another site's page sent the request.
FOREIGN_SITES = frozenset({"cross-site", "same-site"})
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# RFC 3986 reg-name (less percent-encoding, which Host never needs) and IPv4.
_NAME_RE = re.compile(r"[a-z0-9_](?:[a-z0-9_.-]{0,251}[a-z0-9_])?\.?")
_PORT_RE = re.compile(r"[0-9]{1,5}")


def split_host(value: str) -> tuple[str, int | None] | None:
    """The name (lower case, no brackets) and port of a ``Host`` header or of
    the ``host[:port]`` of an origin; ``None`` if it is malformed.

    >>> split_host("LocalHost:8080")
    ('localhost', 8080)
    >>> split_host("[::1]")
    ('::1', None)
    """
    value = value.strip().lower()
    port: int | None = None
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket:
            return None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
        if rest:
            if not rest.startswith(":") or not _PORT_RE.fullmatch(rest[1:]):
                return None
            port = int(rest[1:])
    else:
        name, colon, text = value.partition(":")
        if colon:
            if not _PORT_RE.fullmatch(text):
                return None
            port = int(text)
        if not _NAME_RE.fullmatch(name):
            return None
    if port is not None and port > 65535:
        return None
    return name.rstrip("."), port


def is_loopback_name(name: str) -> bool:
    """Whether a host name (as :func:`split_host` gives it) can only mean this
    machine, with no DNS asked: ``localhost`` and its subdomains (RFC 6761
    §6.3: "name resolution APIs and libraries SHOULD recognize localhost
    names as special and SHOULD always return the IP loopback address") and
    loopback addresses."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_origin(value: str) -> tuple[str, str, int | None] | None:
    """Scheme, name and port (``None`` for the scheme's default) of a serialized
    origin (RFC 6454 §6.2, ``scheme://host[:port]``); ``None`` for ``null``
    (an opaque origin: a sandboxed frame, a ``file:`` page) or anything malformed."""
    scheme, sep, rest = value.strip().lower().partition("://")
    if not sep or scheme not in _DEFAULT_PORTS or not rest or "/" in rest:
        return None
    split = split_host(rest)
    if split is None:
        return None
    name, port = split
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    return scheme, name, port


def _same_place(origin: tuple[str, str, int | None], host: tuple[str, int | None]) -> bool:
    _, name, port = origin
    host_name, host_port = host
    if host_port in (80, 443):
        host_port = None  # a client that wrote the default port: the origin never does
    return name == host_name and port == host_port


def host_allowed(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``name`` is one of ``patterns``: ``"*"`` is every name,
    ``".example.com"`` is ``example.com`` and every name under it."""
    for pattern in patterns:
        if pattern == "*" or pattern == name:
            return True
        if pattern.startswith(".") and (name == pattern[1:] or name.endswith(pattern)):
            return True
    return False


def normalize_origin(value: str) -> str | None:
    """The canonical spelling of a configured origin (lower case, no default
    port), ``"*"`` for any, or ``None`` if it is not an origin."""
    if value.strip() == "*":
        return "*"
    parsed = parse_origin(value)
    if parsed is None:
        return None
    scheme, name, port = parsed
    host = f"[{name}]" if ":" in name else name
    return f"{scheme}://{host}" + ("" if port is None else f":{port}")


#: The most ``Host`` values a :class:`Policy` remembers as served.
SERVED_HOSTS = 64


@dataclass(frozen=True, slots=True)
class Policy:
    """What the hub accepts from browsers (``[server]`` settings).

    Attributes:
        allowed_hosts: host names served beyond the loopback ones (``"*"``:
            all, ``".example.com"``: a domain and its subdomains).
        origins: origins (as :func:`normalize_origin` spells them) whose pages
            may write, open WebSockets and read answers (CORS); ``"*"``: any.
        open_hub: authentication is off, so unlisted Host names are refused.
    """

    allowed_hosts: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    open_hub: bool = True
    #: ``Host`` values found served, so that a request's check is one lookup
    #: (parsing an address per request cost a tenth of a publish); bounded,
    #: since clients may send any number of them.
    _served: dict[str, None] = field(default_factory=dict, compare=False, repr=False)

    def origin_allowed(self, origin: str | None) -> bool:
        """Whether a request's ``Origin`` header names a configured origin."""
        if origin is None or not self.origins:
            return False
        if "*" in self.origins:
            return True
        return normalize_origin(origin) in self.origins

    def check(self, method: str, *, host: str | None, origin: str | None,
              fetch_site: str | None, websocket: bool = False) -> None:
        """Refuse a request (or a WebSocket upgrade, ``method`` ``GET``) that the
        rules of the module docstring do not let through.

        Args:
            host, origin, fetch_site: the ``Host``, ``Origin`` and
                ``Sec-Fetch-Site`` headers, if given.
        Raises:
            Misdirected: ``Host`` names no host this hub serves (421).
            Forbidden: a browser on another site sent it (403).
        """
        self.check_host(host)
        if not websocket and method.upper() not in UNSAFE_METHODS:
            return
        if origin is not None:
            if self.origin_allowed(origin):
                return
            parsed = parse_origin(origin)
            split = None if host is None else split_host(host)
            if parsed is None or split is None or not _same_place(parsed, split):
                what = "WebSocket connections" if websocket else "writes"
                raise Forbidden(
                    f"{what} from pages on another origin are refused; add the origin "
                    "to [server] cors_origins to allow them", field="Origin")
            return
        if not websocket and (fetch_site or "").strip().lower() in FOREIGN_SITES:
            raise Forbidden("writes sent by another site's page are refused; add its "
                            "origin to [server] cors_origins to allow them",
                            field="Sec-Fetch-Site")

    def check_host(self, host: str | None) -> None:
        """Refuse a ``Host`` this hub does not serve (the module docstring says which).

        Raises:
            Misdirected: (421).
        """
        if host is None or (not self.open_hub and not self.allowed_hosts):
            return  # no Host: HTTP/1.0 or a test harness, never a browser
        if host in self._served:
            return
        split = split_host(host)
        if split is not None and (is_loopback_name(split[0])
                                  or host_allowed(split[0], self.allowed_hosts)):
            if len(self._served) < SERVED_HOSTS:
                self._served[host] = None
            return
        raise Misdirected("this hub does not serve that host name; list it in "
                          "[server] allowed_hosts to serve it", field="Host")

