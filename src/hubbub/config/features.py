"""Settings of the hub's features beyond namespaces: the server, uploads, jobs, limits."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.depth import DEFAULT_JSON_DEPTH


@dataclass(frozen=True, slots=True)
class UploadsConfig:
    """Settings of tus uploads (:mod:`hubbub.core.uploads`); sizes in bytes, times in s."""

    dir: str | None = None
    max_size: int = 10 << 30
    expiration: float = 86400.0
    keep: float = 7 * 86400.0
    jobs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class JobsConfig:
    """Settings of asynchronous jobs (:mod:`hubbub.core.jobs`); times in seconds."""

    keep: float = 86400.0
    lease: float = 30.0
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class ServerConfig:
    buffer: int = 1024
    heartbeat: float = 15.0
    max_wait: float = 60.0
    max_limit: int = 1000
    presence_ttl: float = 30.0
    #: Host names served beyond the loopback ones (:mod:`hubbub.protocol.origins`).
    allowed_hosts: tuple[str, ...] = ()
    #: Origins whose pages may write, open WebSockets and read answers (CORS).
    cors_origins: tuple[str, ...] = ()
    cors_credentials: bool = False
    cors_max_age: float = 600.0
    #: PEM certificate chain and private key of ``hubbub serve`` over TLS
    #: (``--tls-cert``/``--tls-key`` win over these).
    tls_cert: str | None = None
    tls_key: str | None = None
    # The server layer's limits (hubbub.server.settings, docs/operations.md);
    # None keeps the server's default.
    head_timeout: float | None = None
    body_timeout: float | None = None
    keepalive_timeout: float | None = None
    write_deadline: float | None = None
    cut_off_grace: float | None = None
    linger_timeout: float | None = None
    max_connections: int | None = None
    max_header_bytes: int | None = None
    send_buffer: int | None = None


@dataclass(frozen=True, slots=True)
class LimitsConfig:
    """Abuse limits (``docs/operations.md``): each answered with a 4xx, 0 turning it off.

    Per-principal limits count by the credential's subject when authentication
    is on (the anonymous grant by client address); with it off every client is
    the same principal, so only the hub-wide limits apply.
    """

    json_depth: int = DEFAULT_JSON_DEPTH
    topics: int = 100_000
    topics_per_namespace: int = 20_000
    upload_bytes: int = 100 << 30
    upload_bytes_per_principal: int = 20 << 30
    connections_per_principal: int = 1000
    subscriptions_per_principal: int = 10_000



__all__ = ["JobsConfig", "LimitsConfig", "ServerConfig", "UploadsConfig"]
