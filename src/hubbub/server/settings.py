"""What ``hubbub serve``'s own server layer is told: addresses, limits,
timeouts and TLS, with the defaults a hub on a developer's laptop needs.

Every field is documented in docs/operations.md. The doors never see these;
they are the I/O layer's alone.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Limits and timeouts of one server (every connection, every protocol)."""

    host: str = "127.0.0.1"
    port: int = 8080
    #: Seconds a client has to send a request's whole head (slowloris).
    head_timeout: float = 10.0
    #: Seconds a request body may go without a byte before the request fails (408).
    body_timeout: float = 30.0
    #: Seconds an idle keep-alive connection is kept between requests.
    keepalive_timeout: float = 20.0
    #: Connections served at once; past it a new one gets 503 and is closed.
    max_connections: int = 50_000
    #: Bytes of a request head (request line and headers); past it, 431.
    max_header_bytes: int = 64 * 1024
    #: Seconds a socket may take nothing of what is queued for it before its
    #: client counts as a slow consumer and is cut off (with its resume cursor).
    write_deadline: float = 20.0
    #: Seconds a slow consumer's socket, once its last words are queued and it
    #: is closed, may still take them before it is aborted.
    cut_off_grace: float = 1.0
    #: The kernel's send buffer per socket (SO_SNDBUF), in bytes; ``None``
    #: leaves the system's default. Small enough that a stalled reader is seen.
    send_buffer: int | None = 256 * 1024
    #: WebSocket keepalive: a ping after this many idle seconds ...
    ws_ping_interval: float = 20.0
    #: ... and the connection closed when its pong takes longer than this.
    ws_ping_timeout: float = 20.0
    #: Seconds a connection the server closes first keeps reading (and
    #: dropping) what its client still sends, so the client reads the answer
    #: instead of a reset (lingering close).
    linger_timeout: float = 2.0
    #: The largest WebSocket message a client may send, in bytes (1009 past it).
    ws_max_size: int = 1024 * 1024 + 64 * 1024
    #: Seconds the drain of a shutdown may take before what is left is closed.
    drain_timeout: float = 10.0
    #: PEM certificate chain and private key: with both, the server speaks
    #: TLS, and HTTP/2 to clients that offer it (ALPN ``h2``).
    tls_cert: str | None = None
    tls_key: str | None = None
    #: HTTP/2: requests served at once on one connection
    #: (SETTINGS_MAX_CONCURRENT_STREAMS); streams past it are refused.
    h2_max_concurrent_streams: int = 100
    #: HTTP/2: bytes of request body one stream may hold unread (its
    #: SETTINGS_INITIAL_WINDOW_SIZE).
    h2_stream_window: int = 256 * 1024
    #: HTTP/2 rapid reset (CVE-2023-44487): streams a client may reset within
    #: ``h2_reset_interval`` seconds before its connection is closed.
    h2_max_resets: int = 200
    h2_reset_interval: float = 30.0


def from_config(server: Any, settings: ServerSettings | None = None) -> ServerSettings:
    """``settings`` (or the defaults) with what the ``[server]`` table of a
    :class:`hubbub.config.Config` sets (its keys named like these fields)."""
    settings = settings or ServerSettings()
    changes = {f.name: getattr(server, f.name) for f in fields(ServerSettings)
               if getattr(server, f.name, None) is not None}
    return replace(settings, **changes)


__all__ = ["ServerSettings", "from_config"]
