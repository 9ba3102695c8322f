"""Hub configuration: per-namespace settings from a TOML file (pure).

Example ``hubbub.toml``::

    [defaults]                 # every namespace not named below
    history_size = 100000      # messages kept per topic (0: unlimited)
    history_age = "7d"         # s, m, h, d suffixes or plain seconds (0: unlimited)
    max_message_size = 1048576 # bytes of payload
    max_deliver = 5            # consumer groups: tries before a message is dead-lettered

    [namespaces.cursors]       # topics cursors.*
    ephemeral = true           # slow subscribers lose messages (a gap is said) instead of being cut off
    history_size = 100

    [namespaces.chat]          # topics chat.*
    presence = true            # track who subscribes (docs/presence.md); default false

    [server]
    buffer = 1024              # messages held per subscriber before it counts as slow
    tls_cert = "/etc/hubbub/cert.pem"   # TLS, and HTTP/2 to clients that offer it
    tls_key = "/etc/hubbub/key.pem"     # (docs/operations.md)
    heartbeat = 15             # seconds between SSE heartbeat comments
    presence_ttl = 30          # a presence entry its node stops renewing expires after this
    allowed_hosts = ["hub.example.com"]       # Host names served beyond loopback ones
                               # ("*": all; ".example.com": it and its subdomains; docs/security.md)
    cors_origins = ["https://app.example.com"]  # pages that may call the hub (CORS, WebSocket, writes)
    cors_credentials = false   # let those pages send cookies/HTTP auth (Access-Control-Allow-Credentials)
    cors_max_age = "10m"       # how long a browser may cache a preflight's answer

    [uploads]                  # tus uploads (docs/uploads.md)
    dir = "/srv/uploads"       # default: <store dir>/uploads (sqlite), a temp dir (memory)
    max_size = 10737418240     # bytes per upload
    expiration = "24h"         # an unfinished upload expires this long after its last write
    keep = "7d"                # a completed upload is kept this long (0: until deleted)
    jobs = ["thumbnails"]      # queues an upload may start a job on ("*": any)

    [jobs]                     # asynchronous jobs (docs/jobs.md)
    keep = "24h"               # a finished job is kept this long (0: forever)
    lease = "30s"              # default lease of a taken job (a worker's heartbeat extends it)
    max_attempts = 3           # tries before a job fails (its queue's max_deliver)

    [limits]                   # abuse limits (docs/operations.md); 0 turns one off
    json_depth = 64            # deepest nesting of arrays and objects in a client's JSON
    topics = 100000            # topics in all
    topics_per_namespace = 20000
    upload_bytes = 107374182400            # bytes promised by unfinished uploads, in all
    upload_bytes_per_principal = 21474836480
    connections_per_principal = 1000       # WebSocket and SSE connections (auth on)
    subscriptions_per_principal = 10000    # live subscriptions (auth on)

    [auth]                     # authentication (docs/auth.md); off when no key is set
    secret_file = "/run/secrets/hubbub-jwt"   # HS256 secret (or secret = "..."), >= 32 bytes
    public_key_file = "/etc/hubbub/jwt.pem"   # RS256/ES256/EdDSA public key (or public_key)
    issuer = "https://login.example.com"      # checked when set (iss claim)
    audience = "hubbub"                       # checked when set (aud claim)
    leeway = "30s"                            # clock skew allowed on exp and nbf

    [auth.api_keys."hk_3b1f9c2e8d7a6f50"]      # an API key and the claims it stands for
    subject = "billing-worker"
    pub = ["jobs-queue.billing"]              # topic patterns it may publish to
    sub = ["billing.>"]                       # topic patterns it may subscribe to

    [auth.anonymous]                          # what a client with no credentials may do
    sub = ["public.>"]                        # (default: nothing; it is asked to authenticate)

    [namespaces.announcements]
    subscribers = ["*"]        # subjects who may subscribe to every topic of the namespace
    publishers = ["alice"]     # ... and publish ("*": every authenticated client)
"""

from __future__ import annotations

import functools
import hashlib
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .engines.base import Retention
from .protocol.depth import DEFAULT_JSON_DEPTH
from .protocol.errors import InvalidTopic
from .protocol.origins import normalize_origin, split_host
from .protocol.topics import namespace, validate_pattern

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """The configuration file is invalid; the message says where."""


def parse_duration(value: Any, *, where: str) -> float:
    """Seconds from ``30``, ``"30s"``, ``"5m"``, ``"12h"`` or ``"7d"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ConfigError(f"{where}: duration must not be negative")
        return float(value)
    if isinstance(value, str) and (m := _DURATION_RE.fullmatch(value.strip())):
        return float(m.group(1)) * _UNITS[m.group(2)]
    raise ConfigError(f"{where}: expected a duration like 30, '30s', '5m', '12h' or '7d'")


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """Settings of the topics in one namespace (the first token of a topic)."""

    history_size: int = 100_000
    history_age: float = 7 * 86400.0
    ephemeral: bool = False
    presence: bool = False
    max_message_size: int = 1 << 20
    max_deliver: int = 5
    #: Subjects granted publishing / subscribing on every topic of the namespace,
    #: on top of their own claims; ``"*"``: every authenticated client.
    publishers: tuple[str, ...] = ()
    subscribers: tuple[str, ...] = ()

    @property
    def retention(self) -> Retention:
        return Retention(
            max_messages=self.history_size or None,
            max_age_ms=int(self.history_age * 1000) or None,
        )


#: The namespace of request-reply inboxes (:mod:`hubbub.core.requests`).
INBOX = "_inbox"
#: The namespace of upload progress topics (:mod:`hubbub.core.uploads`).
UPLOADS = "uploads"
#: The namespace of presence events, ``presence.<topic>`` (:mod:`hubbub.core.presence`).
PRESENCE = "presence"
#: The namespaces of job states and of job queues (:mod:`hubbub.core.jobs`).
JOBS, JOB_QUEUES = "jobs", "jobs-queue"


@functools.cache
def _inbox_defaults(defaults: NamespaceConfig) -> NamespaceConfig:
    """Inboxes, unless configured, keep one reply for a minute: a caller reads it live."""
    return replace(defaults, history_size=1, history_age=60.0)


@functools.cache
def _presence_defaults(defaults: NamespaceConfig) -> NamespaceConfig:
    """Presence events, unless configured, keep the last 1000 per topic for a day."""
    return replace(defaults, history_size=1000, history_age=86400.0)


@functools.cache
def _uploads_defaults(defaults: NamespaceConfig) -> NamespaceConfig:
    """Upload progress topics, unless configured, keep their last 100 events for a day."""
    return replace(defaults, history_size=100, history_age=86400.0)


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


@functools.cache
def _jobs_defaults(defaults: NamespaceConfig, jobs: JobsConfig) -> NamespaceConfig:
    """Job state topics, unless configured, keep their last 1000 states at least as
    long as finished jobs are kept (a day at least; forever when jobs are)."""
    age = 0.0 if not jobs.keep else max(jobs.keep, 86400.0)
    return replace(defaults, history_size=1000, history_age=age)


@functools.cache
def _job_queues_defaults(defaults: NamespaceConfig, jobs: JobsConfig) -> NamespaceConfig:
    """Job queues, unless configured, keep every job (a week by default) and
    give each ``max_attempts`` tries."""
    return replace(defaults, history_size=0, max_deliver=jobs.max_attempts)


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


@dataclass(slots=True)
class Config:
    """The whole configuration; :meth:`namespace` resolves a topic's settings."""

    defaults: NamespaceConfig = field(default_factory=NamespaceConfig)
    namespaces: dict[str, NamespaceConfig] = field(default_factory=dict)
    server: ServerConfig = field(default_factory=ServerConfig)
    uploads: UploadsConfig = field(default_factory=UploadsConfig)
    jobs: JobsConfig = field(default_factory=JobsConfig)
    auth: AuthConfig = field(default_factory=lambda: AuthConfig())
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def for_topic(self, topic: str) -> NamespaceConfig:
        ns = namespace(topic)
        found = self.namespaces.get(ns)
        if found is not None:
            return found
        if ns == UPLOADS:
            return _uploads_defaults(self.defaults)
        if ns == PRESENCE:
            return _presence_defaults(self.defaults)
        if ns == JOBS:
            return _jobs_defaults(self.defaults, self.jobs)
        if ns == JOB_QUEUES:
            return _job_queues_defaults(self.defaults, self.jobs)
        return _inbox_defaults(self.defaults) if ns == INBOX else self.defaults

    def retention(self, topic: str) -> Retention:
        return self.for_topic(topic).retention

    @property
    def max_message_size(self) -> int:
        """The largest payload any namespace accepts (bounds request bodies and frames)."""
        return max([self.defaults.max_message_size]
                   + [n.max_message_size for n in self.namespaces.values()])

    @classmethod
    def load(cls, path: str | Path) -> Config:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        return cls.from_dict(raw)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        unknown = set(raw) - {"defaults", "namespaces", "server", "uploads", "jobs", "auth",
                              "limits"}
        if unknown:
            raise ConfigError(f"unknown section(s): {', '.join(sorted(unknown))}")
        defaults = _namespace(NamespaceConfig(), raw.get("defaults", {}), "defaults")
        namespaces = {
            name: _namespace(defaults, section, f"namespaces.{name}")
            for name, section in raw.get("namespaces", {}).items()
        }
        server = _server(raw.get("server", {}))
        return cls(defaults, namespaces, server, _uploads(raw.get("uploads", {})),
                   _jobs(raw.get("jobs", {})), _auth(raw.get("auth", {})),
                   _limits(raw.get("limits", {})))


def _namespace(base: NamespaceConfig, section: Any, where: str) -> NamespaceConfig:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table")
    known = {f.name for f in fields(NamespaceConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"{where}.{key}: unknown setting")
        if key == "history_age":
            changes[key] = parse_duration(value, where=f"{where}.{key}")
        elif key in ("ephemeral", "presence"):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{key}: expected true or false")
            changes[key] = value
        elif key in ("publishers", "subscribers"):
            changes[key] = _strings(value, f"{where}.{key}", "subjects")
        else:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"{where}.{key}: expected a non-negative integer")
            changes[key] = value
    return replace(base, **changes)


#: The server layer's timeouts among the [server] keys (durations).
_SERVER_TIMEOUTS = ("head_timeout", "body_timeout", "keepalive_timeout", "write_deadline",
                    "linger_timeout")


def _server(section: Any) -> ServerConfig:
    if not isinstance(section, dict):
        raise ConfigError("server: expected a table")
    known = {f.name for f in fields(ServerConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        if key not in known:
            raise ConfigError(f"server.{key}: unknown setting")
        if key in _BROWSER_KEYS:
            changes[key] = _browser_setting(key, value)
        elif key in ("tls_cert", "tls_key"):
            if not isinstance(value, str) or not value:
                raise ConfigError(f"server.{key}: expected a file name")
            changes[key] = value
        elif key in ("heartbeat", "max_wait", "presence_ttl", "cors_max_age", *_SERVER_TIMEOUTS):
            changes[key] = parse_duration(value, where=f"server.{key}")
            if key in ("presence_ttl", *_SERVER_TIMEOUTS) and not changes[key] > 0:
                raise ConfigError(f"server.{key}: must be more than 0")
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"server.{key}: expected a positive integer")
        else:
            changes[key] = value
    if changes.get("cors_credentials") and "*" in changes.get("cors_origins", ()):
        # Fetch standard: a credentialed answer "cannot use *" as its allowed origin.
        raise ConfigError("server.cors_origins: \"*\" cannot go with cors_credentials = true")
    return replace(ServerConfig(), **changes)


_BROWSER_KEYS = ("allowed_hosts", "cors_origins", "cors_credentials")


def _browser_setting(key: str, value: Any) -> Any:
    """``allowed_hosts``, ``cors_origins`` (normalized) or ``cors_credentials``."""
    where = f"server.{key}"
    if key == "cors_credentials":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false")
        return value
    if key == "allowed_hosts":
        names = []
        for i, name in enumerate(_strings(value, where, "host names")):
            name = name.strip().lower()
            dot = "." if name.startswith(".") else ""
            split = split_host(name[len(dot):])
            if name != "*" and (split is None or split[1] is not None):
                raise ConfigError(f"{where}[{i}]: expected a host name without a port, "
                                  "\"*\" or \".domain\"")
            names.append(name if split is None else dot + split[0])
        return tuple(names)
    origins = []
    for i, text in enumerate(_strings(value, where, "origins")):
        origin = normalize_origin(text)
        if origin is None:
            raise ConfigError(f"{where}[{i}]: expected an origin like "
                              "\"https://app.example.com\" (scheme, host, port; no path)")
        origins.append(origin)
    return tuple(origins)


def _uploads(section: Any) -> UploadsConfig:
    if not isinstance(section, dict):
        raise ConfigError("uploads: expected a table")
    known = {f.name for f in fields(UploadsConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        where = f"uploads.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown setting")
        if key in ("expiration", "keep"):
            changes[key] = parse_duration(value, where=where)
        elif key == "dir":
            if not isinstance(value, str) or not value:
                raise ConfigError(f"{where}: expected a directory path")
            changes[key] = value
        elif key == "jobs":
            if not isinstance(value, list) or not all(isinstance(q, str) for q in value):
                raise ConfigError(f"{where}: expected a list of queue names")
            changes[key] = tuple(value)
        elif isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{where}: expected a positive integer")
        else:
            changes[key] = value
    return replace(UploadsConfig(), **changes)


def _jobs(section: Any) -> JobsConfig:
    if not isinstance(section, dict):
        raise ConfigError("jobs: expected a table")
    known = {f.name for f in fields(JobsConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        where = f"jobs.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown setting")
        if key in ("keep", "lease"):
            changes[key] = parse_duration(value, where=where)
            if key == "lease" and not 0.1 <= changes[key] <= 43200:
                raise ConfigError(f"{where}: expected from 0.1 seconds to 12 hours")
        elif isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1000:
            raise ConfigError(f"{where}: expected an integer from 1 to 1000")
        else:
            changes[key] = value
    return replace(JobsConfig(), **changes)


def _limits(section: Any) -> LimitsConfig:
    if not isinstance(section, dict):
        raise ConfigError("limits: expected a table")
    known = {f.name for f in fields(LimitsConfig)}
    changes: dict[str, Any] = {}
    for key, value in section.items():
        where = f"limits.{key}"
        if key not in known:
            raise ConfigError(f"{where}: unknown setting")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"{where}: expected a non-negative integer (0: no limit)")
        if key == "json_depth" and not 1 <= value <= 512:
            # msgspec recurses once per level: far below Python's recursion limit.
            raise ConfigError(f"{where}: expected an integer from 1 to 512")
        changes[key] = value
    return replace(LimitsConfig(), **changes)


# -- authentication (docs/auth.md) ----------------------------------------------------

#: RFC 7518 §3.2: "A key of the same size as the hash output (for instance, 256
#: bits for "HS256") or larger MUST be used with this algorithm."
MIN_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class Grant:
    """What one credential allows: topic patterns to publish and to subscribe to.

    ``admin`` allows everything. ``subject`` names the client (a JWT's ``sub``,
    an API key's ``subject``); namespace rules (``publishers``, ``subscribers``)
    grant by it.
    """

    subject: str | None = None
    pub: tuple[str, ...] = ()
    sub: tuple[str, ...] = ()
    admin: bool = False


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How clients prove who they are (:mod:`hubbub.core.auth`); off when nothing is set."""

    #: The HS256 shared secret (also HS384/HS512 when long enough).
    secret: bytes | None = None
    #: A PEM public key: RS*/PS* for RSA, ES* for EC, EdDSA for Ed25519/Ed448.
    public_key: str | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway: float = 30.0
    #: SHA-256 hex digest of each API key -> what it grants (keys are not kept).
    api_keys: dict[str, Grant] = field(default_factory=dict)
    #: What a request with no credentials may do; ``None``: it must authenticate.
    anonymous: Grant | None = None

    @property
    def enabled(self) -> bool:
        """Whether any rule is set; when not, every client may do everything."""
        return bool(self.secret or self.public_key or self.api_keys) or self.anonymous is not None


def _strings(value: Any, where: str, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where}: expected a list of {what}")
    return tuple(value)


def _patterns(value: Any, where: str) -> tuple[str, ...]:
    out = _strings(value, where, "topic patterns")
    for i, pattern in enumerate(out):
        try:
            validate_pattern(pattern)
        except InvalidTopic as exc:
            raise ConfigError(f"{where}[{i}]: {exc.message}") from None
    return out


def _grant(section: Any, where: str, *, keys: set[str]) -> Grant:
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected a table")
    if unknown := sorted(set(section) - keys):
        raise ConfigError(f"{where}.{unknown[0]}: unknown setting")
    subject = section.get("subject")
    if subject is not None and (not isinstance(subject, str) or not subject):
        raise ConfigError(f"{where}.subject: expected a name")
    admin = section.get("admin", False)
    if not isinstance(admin, bool):
        raise ConfigError(f"{where}.admin: expected true or false")
    return Grant(subject, _patterns(section.get("pub", []), f"{where}.pub"),
                 _patterns(section.get("sub", []), f"{where}.sub"), admin)


def _read(path: Any, where: str) -> bytes:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{where}: expected a file path")
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None


def _auth(section: Any) -> AuthConfig:
    if not isinstance(section, dict):
        raise ConfigError("auth: expected a table")
    known = {"secret", "secret_file", "public_key", "public_key_file", "issuer", "audience",
             "leeway", "api_keys", "anonymous"}
    if unknown := sorted(set(section) - known):
        raise ConfigError(f"auth.{unknown[0]}: unknown setting")
    for one, other in (("secret", "secret_file"), ("public_key", "public_key_file")):
        if one in section and other in section:
            raise ConfigError(f"auth: give {one} or {other}, not both")
    secret: bytes | None = None
    if "secret_file" in section:
        secret = _read(section["secret_file"], "auth.secret_file").rstrip(b"\r\n")
    elif "secret" in section:
        if not isinstance(section["secret"], str):
            raise ConfigError("auth.secret: expected a string")
        secret = section["secret"].encode()
    if secret is not None and len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"auth.secret: must be at least {MIN_SECRET_BYTES} bytes "
                          "(RFC 7518 §3.2); `openssl rand -hex 32` makes one")
    public_key: str | None = None
    if "public_key_file" in section:
        public_key = _read(section["public_key_file"], "auth.public_key_file").decode(
            errors="replace")
    elif "public_key" in section:
        if not isinstance(section["public_key"], str):
            raise ConfigError("auth.public_key: expected PEM text")
        public_key = section["public_key"]
    if public_key is not None:
        from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            pem_key = load_pem_public_key(public_key.encode())
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"auth.public_key: not a PEM public key ({exc})") from None
        kinds = (rsa.RSAPublicKey, ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey,
                 ed448.Ed448PublicKey)
        if not isinstance(pem_key, kinds):
            raise ConfigError("auth.public_key: expected an RSA, EC or Ed25519/Ed448 key")
    claims: dict[str, str | None] = {}
    for key in ("issuer", "audience"):
        value = section.get(key)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"auth.{key}: expected a string")
        claims[key] = value
    leeway = parse_duration(section.get("leeway", 30), where="auth.leeway")
    keys = section.get("api_keys", {})
    if not isinstance(keys, dict):
        raise ConfigError("auth.api_keys: expected a table of keys")
    api_keys: dict[str, Grant] = {}
    for key, grant in keys.items():
        where = f"auth.api_keys.{key[:6]}..."  # never the whole key in a message
        if len(key) < 16:
            raise ConfigError(f"{where}: an API key must be at least 16 characters")
        api_keys[hashlib.sha256(key.encode()).hexdigest()] = _grant(
            grant, where, keys={"subject", "pub", "sub", "admin"})
    anonymous = None
    if "anonymous" in section:
        anonymous = _grant(section["anonymous"], "auth.anonymous", keys={"pub", "sub"})
    return AuthConfig(secret, public_key, claims["issuer"], claims["audience"], leeway,
                      api_keys, anonymous)
