"""``hubbub serve``, ``hubbub config`` (the configuration ``serve`` would run with)
and ``hubbub token`` (a JWT a hub with the same secret accepts).

``serve`` imports the server stack (its own server, Starlette) only when it runs, so
``pub`` and ``sub`` start quickly.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..protocol.errors import InvalidRequest, UsageError
from .common import EXIT_ERROR, EXIT_USAGE, complain
from .settings import options_from_environment

if TYPE_CHECKING:
    from ..config import Config

DEFAULT_STORE = "sqlite:///./hubbub-data/hub.db"


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def add_parsers(commands: Any) -> None:
    """Add ``serve``, ``config`` and ``token`` to the ``hubbub`` command's subparsers."""
    serve = commands.add_parser("serve", help="run a hub", description="Run a hub.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=_port, default=8080, help="port (%(default)s)")
    serve.add_argument("--store", default=DEFAULT_STORE, metavar="URL",
                       help="sqlite:///PATH, memory:// or redis://HOST:PORT/DB (%(default)s)")
    serve.add_argument("--config", type=Path, metavar="FILE", help="a hubbub.toml file")
    serve.add_argument("--log-level", default="warning",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--log-format", default="text", choices=["text", "json"],
                       help="text lines, or one JSON object per line with request ids "
                            "(%(default)s)")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback address with no [auth] configured")
    serve.add_argument("--tls-cert", metavar="FILE",
                       help="PEM certificate chain: serve TLS, and HTTP/2 to clients that offer it")
    serve.add_argument("--tls-key", metavar="FILE", help="the certificate's PEM private key")
    # Every option of serve also comes from $HUBBUB_<OPTION> (docs/configuration.md);
    # a variable that cannot be used is said when serve (or config) runs.
    serve.set_defaults(environment_errors=options_from_environment(serve, os.environ))
    commands.add_parser(
        "config", parents=[serve], add_help=False, help="print the effective configuration",
        description="Print the configuration `hubbub serve` would run with, given the "
                    "same options and environment, as TOML (secrets masked): the file, "
                    "then HUBBUB_* variables, then options (docs/configuration.md).")

    tok = commands.add_parser(
        "token", help="mint a JWT",
        description="Print a JWT (HS256) that a hub with the same secret accepts. The "
                    "secret comes from --secret-file, --config (its [auth] secret), "
                    "$HUBBUB_SECRET or --secret (visible to other users in the process "
                    "list: prefer the others).",
    )
    tok.add_argument("--sub", dest="subject", metavar="NAME", help="who the holder is")
    tok.add_argument("--pub", action="append", default=[], metavar="PATTERN",
                     help="a topic pattern the holder may publish to (repeatable)")
    tok.add_argument("--subscribe", action="append", default=[], metavar="PATTERN",
                     help="a topic pattern the holder may subscribe to (repeatable)")
    tok.add_argument("--admin", action="store_true", help="the holder may do everything")
    tok.add_argument("--ttl", default="1h", metavar="DURATION",
                     help="lifetime: seconds or 30m, 12h, 7d; 0 never expires (%(default)s)")
    tok.add_argument("--secret", help="the HS256 secret (at least 32 bytes)")
    tok.add_argument("--secret-file", type=Path, metavar="FILE", help="read the secret here")
    tok.add_argument("--config", type=Path, metavar="FILE",
                     help="a hubbub.toml: its [auth] secret, issuer and audience")
    tok.add_argument("--issuer", help="the iss claim (default: the config's)")
    tok.add_argument("--audience", help="the aud claim (default: the config's)")


def _load_config(args: argparse.Namespace) -> Config | None:
    """``serve``'s configuration (file, environment, options), or None once said why not."""
    from ..config import ConfigError
    from .settings import load

    if args.environment_errors:
        for message in args.environment_errors:
            complain(message)
        return None
    try:
        return load(args.config, os.environ)
    except ConfigError as exc:
        complain(f"invalid configuration: {exc}")
        return None


def run_config(args: argparse.Namespace) -> int:
    from .settings import dump_toml, effective_table, mask_url

    config = _load_config(args)
    if config is None:
        return EXIT_USAGE
    options = {"host": args.host, "port": args.port, "store": mask_url(args.store),
               "config": str(args.config) if args.config else None}
    lines = ["# The configuration `hubbub serve` runs with here: the file, then HUBBUB_*",
             "# variables, then options (docs/configuration.md); secrets are masked.",
             "# serve's options:"]
    for key, value in {**options, **{k: v for k, v in vars(args).items()
                                     if k not in options and k not in _NOT_OPTIONS}}.items():
        lines.append(f"#   --{key.replace('_', '-')} = {value if value is not None else ''}")
    print("\n".join(lines) + "\n" + dump_toml(effective_table(config)), end="", flush=True)
    return 0


#: What the parser puts in the namespace besides serve's options.
_NOT_OPTIONS = {"command", "environment_errors"}


def run_serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from ..server.run import configure_logging, is_loopback, serve
    from ..server.settings import ServerSettings
    from ..server.tls import TLSError, server_context

    config = _load_config(args)
    if config is None:
        return EXIT_USAGE
    public = not is_loopback(args.host)
    if public and not args.insecure and not config.auth.enabled:
        complain(
            f"refusing to listen on {args.host}: it is not a loopback address and no "
            "[auth] is configured, so anyone who can reach it could read and publish "
            "every topic; configure [auth] (docs/auth.md), listen on 127.0.0.1, or "
            "pass --insecure to accept that"
        )
        return EXIT_USAGE
    if public and args.insecure and not config.auth.enabled:
        print(f"hubbub: warning: listening on {args.host} with no authentication"
              + ("" if config.server.allowed_hosts else
                 "; only loopback Host names are served until [server] allowed_hosts "
                 "lists others (docs/security.md)"),
              file=sys.stderr, flush=True)
    settings = ServerSettings(host=args.host, port=args.port,
                              tls_cert=args.tls_cert or config.server.tls_cert,
                              tls_key=args.tls_key or config.server.tls_key)
    if settings.tls_cert or settings.tls_key:
        try:
            server_context(settings)
        except TLSError as exc:
            complain(str(exc))
            return EXIT_USAGE
    configure_logging(args.log_level, args.log_format)
    try:
        return serve(args.store, config, host=args.host, port=args.port,
                     log_level=args.log_level, access_log=args.access_log,
                     log_format=args.log_format, settings=settings)
    except ValueError as exc:  # an unknown store URL
        complain(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # the store's directory cannot be made
        complain(f"cannot prepare the store: {exc}")
        return EXIT_ERROR


def run_token(args: argparse.Namespace) -> int:
    from ..config import ConfigError, parse_duration
    from ..core.auth import mint
    from .settings import load

    try:
        config = load(args.config, os.environ)
        ttl = parse_duration(args.ttl, where="--ttl")
    except ConfigError as exc:
        complain(str(exc))
        return EXIT_USAGE
    if args.secret_file is not None:
        try:
            secret: bytes | None = args.secret_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            complain(f"cannot read {args.secret_file}: {exc.strerror}")
            return EXIT_USAGE
    elif args.secret is not None:
        secret = args.secret.encode()
    else:
        env = os.environ.get("HUBBUB_SECRET")
        secret = config.auth.secret or (env.encode() if env else None)
    if not secret:
        raise UsageError("give the secret: --secret-file, --config, $HUBBUB_SECRET or --secret")
    try:
        token = mint(secret, args.subject, pub=args.pub, sub=args.subscribe, admin=args.admin,
                     ttl=ttl or None, issuer=args.issuer or config.auth.issuer,
                     audience=args.audience or config.auth.audience)
    except InvalidRequest as exc:  # a malformed pattern
        raise UsageError(f"--{'pub' if exc.field == 'pub' else 'subscribe'}: {exc.message}"
                         ) from None
    print(token, flush=True)
    return 0

