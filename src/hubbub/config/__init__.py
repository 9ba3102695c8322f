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

from .auth import MIN_SECRET_BYTES, AuthConfig, Grant
from .checks import ConfigError, parse_duration
from .features import JobsConfig, LimitsConfig, ServerConfig, UploadsConfig
from .namespaces import INBOX, JOB_QUEUES, JOBS, PRESENCE, UPLOADS, NamespaceConfig
from .root import Config

__all__ = ["INBOX", "JOBS", "JOB_QUEUES", "MIN_SECRET_BYTES", "PRESENCE", "UPLOADS",
           "AuthConfig", "Config", "ConfigError", "Grant", "JobsConfig", "LimitsConfig",
           "NamespaceConfig", "ServerConfig", "UploadsConfig", "parse_duration"]
