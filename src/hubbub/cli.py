"""The ``hubbub`` command: ``serve``, ``pub``, ``sub``, ``request``, ``upload``, ``worker``
and ``job``.

Thin on purpose: arguments in, a call to :mod:`hubbub.server` or
:class:`hubbub.client.AsyncClient`, JSON lines out. Output contract:

* ``pub`` prints the hub's receipt, ``{topic, offset, cursor, id, time}``,
  as one JSON line.
* ``sub`` prints one JSON line per item on stdout: a message object exactly
  as the hub sends it, or a gap as ``{"gap": {topic, from, to, reason}}``.
  Gaps go to stdout, in order with the messages, because a consumer of the
  stream must not miss them; stderr only carries diagnostics.
* ``sub --group NAME`` takes a share of a consumer group instead: each line is
  a pulled item as the hub sends it (``lease``, ``attempt``, ``deadline``,
  then the message), and the message is acked only once its line is written
  (at-least-once: a line that could not be written is nacked, and a crash
  between writing and acking means the message comes again).
* ``request TOPIC DATA`` publishes a request (DATA as for ``pub``) and
  prints the reply, the message object as the hub sends it, as one JSON
  line; no reply within ``--timeout`` exits 1 (the hub answered 504).
* ``upload FILE`` shows a progress bar with an ETA on stderr when it is a
  terminal (nothing otherwise; :mod:`hubbub.cli_progress`) and prints
  ``{url, id, size, resumed_from}`` as one JSON line when done;
  an interrupted upload of the same unchanged file resumes on the next run
  (:mod:`hubbub.client.uploads`). With ``--job QUEUE`` the line also names the
  ``job`` the upload started; ``--follow`` then shows the job's progress on
  stderr and prints the finished job as a second line (exit 1 if it failed).
* ``worker QUEUE --run MODULE:FUNCTION`` calls ``FUNCTION(data, progress)``
  for each job of the queue (:meth:`hubbub.client.jobs.Jobs.work`) and prints
  each job as it ended, one JSON line each.
* ``job ID`` prints the job as one JSON line; ``--follow`` prints each of its
  states until the final one.
* ``token --sub NAME --pub PATTERN --subscribe PATTERN`` prints a JWT (HS256)
  that a hub with the same secret accepts (``docs/auth.md``). The client
  commands send ``--token`` (default: ``$HUBBUB_TOKEN``) on every door, to
  the hub at ``--url`` (default: ``$HUBBUB_URL``).
* ``config`` takes ``serve``'s options and prints the configuration ``serve``
  would run with (:mod:`hubbub.cli_config`: the file, then ``HUBBUB_*``
  variables, then options), secrets masked.
* A client command that cannot reach its hub says so within
  :data:`REACH_WITHIN` seconds (exit 1); ``sub`` reconnects by itself only
  once it was connected, and says so on stderr each time. DATA that begins
  like JSON must be JSON (``--text`` sends it as a string). Errors name the
  option or variable to change.
* Exit status: 0 done; 1 the hub refused the request or could not be
  reached, or ``serve`` could not start (port taken, store will not open);
  2 bad arguments or configuration; 130 interrupted.

``serve`` imports the server stack (its own server, Starlette) only when it runs, so
``pub`` and ``sub`` start quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import msgspec

from . import __version__, bench, cli_admin
from .cli_config import Parser, options_from_environment
from .client import TRANSPORTS, AsyncClient
from .protocol.errors import (
    Conflict,
    Forbidden,
    HubbubError,
    InvalidRequest,
    Unauthorized,
    Unavailable,
    UsageError,
)

if TYPE_CHECKING:
    from .config import Config

DEFAULT_URL = "http://127.0.0.1:8080"
#: How long a client command tries to reach the hub before it says it cannot.
REACH_WITHIN = 3.0
DEFAULT_STORE = "sqlite:///./hubbub-data/hub.db"
JSON = "application/json"
OCTET = "application/octet-stream"
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class _StdoutClosed(Exception):
    """Whoever read our output has gone; nothing is wrong."""


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubbub", description="A real-time messaging hub: one durable log, many doors.",
        epilog="exit status: 0 done, 1 the hub refused or is unreachable (or could not "
               "start), 2 bad arguments or configuration, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"hubbub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=Parser)

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

    pub = commands.add_parser(
        "pub", help="publish one message",
        description="Publish one message. DATA is sent as JSON when it parses as JSON; "
                    "DATA that begins like JSON ({, [ or \") must be valid JSON; other "
                    "text is sent as a JSON string, and so is any DATA with --text. "
                    "@FILE reads the payload from a file (@- from stdin), as JSON when "
                    "it parses, else as bytes. --content-type sends the payload as "
                    "bytes of that type.",
    )
    pub.add_argument("topic", metavar="TOPIC")
    pub.add_argument("data", metavar="DATA")
    pub.add_argument("--key", help="idempotency key (default: a fresh random one)")
    pub.add_argument("--content-type", metavar="TYPE", help="send DATA as bytes of this type")
    pub.add_argument("--text", action="store_true",
                     help="send DATA as a JSON string, whatever it looks like")
    pub.add_argument("--timeout", type=_seconds, default=30.0, metavar="SECONDS",
                     help="keep retrying (same key) this long (%(default)s)")

    sub = commands.add_parser(
        "sub", help="follow topics",
        description="Follow topics or patterns; print one JSON line per message, and "
                    'gaps as {"gap": ...} lines. Reconnects and resumes by itself. '
                    "With --group, share the messages with the group's other workers "
                    "instead: each is printed by one worker and acked once printed.",
    )
    sub.add_argument("topics", metavar="TOPIC", nargs="+")
    sub.add_argument("--transport", choices=["auto", *TRANSPORTS],
                     help="the door to use (default: auto, the first of ws, sse, longpoll, "
                          "poll that is not refused; groups pull over HTTP)")
    sub.add_argument("--after", metavar="CURSOR",
                     help="a cursor, 'start' or 'end' (default: end, only new messages)")
    sub.add_argument("--group", metavar="NAME", help="consume as a worker of this group")
    sub.add_argument("--start", choices=["start", "end"],
                     help="where a new group begins (default: end, only new messages)")
    sub.add_argument("--lease", type=_seconds, default=30.0, metavar="SECONDS",
                     help="with --group: seconds to print and ack a message (%(default)s)")
    sub.add_argument("--count", type=_positive_int, metavar="N",
                     help="exit after N messages (default: follow forever)")
    up = commands.add_parser(
        "upload", help="upload a file (resumable, tus)",
        description="Upload a file to the hub over tus, with a progress bar. An "
                    "interrupted upload of the same unchanged file resumes on the next run.",
    )
    up.add_argument("file", metavar="FILE", type=Path)
    up.add_argument("--job", metavar="QUEUE", help="start a job on this queue once uploaded")
    up.add_argument("--chunk-size", type=_positive_int, default=8 << 20, metavar="BYTES",
                    help="bytes per request (%(default)s)")
    up.add_argument("--state", type=Path, metavar="FILE",
                    help="where unfinished uploads are remembered "
                         "(default: ~/.local/state/hubbub/uploads.json)")
    up.add_argument("--timeout", type=_seconds, default=60.0, metavar="SECONDS",
                    help="give up after this long without progress (%(default)s)")
    up.add_argument("--follow", action="store_true",
                    help="with --job: follow the job until it finished")
    work = commands.add_parser(
        "worker", help="run a Python function for each job of a queue",
        description="Take the jobs of QUEUE one at a time and call FUNCTION(data, progress) "
                    "for each: its return value is the job's result; an exception fails the "
                    "job (retried while attempts are left); progress(percent, message) "
                    "reports progress. Prints each job as it ended, one JSON line each.",
    )
    work.add_argument("queue", metavar="QUEUE")
    work.add_argument("--run", required=True, metavar="MODULE:FUNCTION",
                      help="the function to call (the current directory is importable)")
    work.add_argument("--lease", type=_seconds, metavar="SECONDS",
                      help="lease of each job; heartbeats keep it (default: the hub's)")
    work.add_argument("--count", type=_positive_int, metavar="N",
                      help="exit after N jobs (default: run forever)")
    job = commands.add_parser("job", help="show or follow a job",
                              description="Print a job as one JSON line.")
    job.add_argument("id", metavar="ID")
    job.add_argument("--follow", action="store_true",
                     help="print each state, from the first, until the final one")
    req = commands.add_parser(
        "request", help="send a request and print the reply",
        description="Publish a request to TOPIC and wait for one responder's reply "
                    "(request-reply, docs/requests.md); print the reply as one JSON line. "
                    "DATA is sent as for pub.",
    )
    req.add_argument("topic", metavar="TOPIC")
    req.add_argument("data", metavar="DATA")
    req.add_argument("--timeout", type=_seconds, default=5.0, metavar="SECONDS",
                     help="wait this long for the reply (%(default)s)")
    req.add_argument("--content-type", metavar="TYPE", help="send DATA as bytes of this type")
    req.add_argument("--text", action="store_true",
                     help="send DATA as a JSON string, whatever it looks like")
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
    for client_command in (pub, sub, up, work, job, req):
        client_command.add_argument(
            "--url", default=os.environ.get("HUBBUB_URL") or DEFAULT_URL,
            help=f"the hub (default: $HUBBUB_URL or {DEFAULT_URL})")
        client_command.add_argument(
            "--token", default=os.environ.get("HUBBUB_TOKEN") or None,
            help="a JWT or API key for the hub (default: $HUBBUB_TOKEN)")
    bench.add_parser(commands)
    cli_admin.add_parser(commands, DEFAULT_URL)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args, parser)
        if args.command == "config":
            return _config(args)
        if args.command == "token":
            return _token(args)
        if args.command == "bench":
            return bench.run_command(args)
        if args.command == "pub":
            return asyncio.run(_pub(args))
        if args.command == "upload":
            return asyncio.run(_upload(args))
        if args.command == "request":
            return asyncio.run(_request(args))
        if args.command == "worker":
            return asyncio.run(_worker(args))
        if args.command == "job":
            return asyncio.run(_job(args))
        if args.command == "admin":
            try:
                return asyncio.run(cli_admin.run(args, _print_json))
            except argparse.ArgumentError as exc:
                parser.error(str(exc))
        return asyncio.run(_sub(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _StdoutClosed:
        return 0
    except HubbubError as exc:
        _complain(exc.message + (f" ({exc.field})" if exc.field else "") + _hint(exc))
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


def _hint(exc: HubbubError) -> str:
    """What to change when the hub refused who we are."""
    if isinstance(exc, Unauthorized):
        return "; give a token with --token or $HUBBUB_TOKEN (hubbub token mints one)"
    if isinstance(exc, Forbidden):
        return "; the token given (--token or $HUBBUB_TOKEN) does not allow this"
    return ""


def _complain(message: str, *, level: str = "error") -> None:
    print(f"hubbub: {level}: {message}", file=sys.stderr, flush=True)


def _load_config(args: argparse.Namespace) -> Config | None:
    """``serve``'s configuration (file, environment, options), or None once said why not."""
    from .cli_config import load
    from .config import ConfigError

    if args.environment_errors:
        for message in args.environment_errors:
            _complain(message)
        return None
    try:
        return load(args.config, os.environ)
    except ConfigError as exc:
        _complain(f"invalid configuration: {exc}")
        return None


def _config(args: argparse.Namespace) -> int:
    from .cli_config import dump_toml, effective_table, mask_url

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


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .server.run import configure_logging, is_loopback, serve
    from .server.settings import ServerSettings
    from .server.tls import TLSError, server_context

    config = _load_config(args)
    if config is None:
        return EXIT_USAGE
    public = not is_loopback(args.host)
    if public and not args.insecure and not config.auth.enabled:
        _complain(
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
            _complain(str(exc))
            return EXIT_USAGE
    configure_logging(args.log_level, args.log_format)
    try:
        return serve(args.store, config, host=args.host, port=args.port,
                     log_level=args.log_level, access_log=args.access_log,
                     log_format=args.log_format, settings=settings)
    except ValueError as exc:  # an unknown store URL
        _complain(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # the store's directory cannot be made
        _complain(f"cannot prepare the store: {exc}")
        return EXIT_ERROR


def _token(args: argparse.Namespace) -> int:
    from .cli_config import load
    from .config import ConfigError, parse_duration
    from .core.auth import mint

    try:
        config = load(args.config, os.environ)
        ttl = parse_duration(args.ttl, where="--ttl")
    except ConfigError as exc:
        _complain(str(exc))
        return EXIT_USAGE
    if args.secret_file is not None:
        try:
            secret: bytes | None = args.secret_file.read_bytes().rstrip(b"\r\n")
        except OSError as exc:
            _complain(f"cannot read {args.secret_file}: {exc.strerror}")
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


def _payload(data: str, content_type: str | None, text: bool = False
             ) -> tuple[Any, str | None]:
    """What ``pub`` sends: (value or bytes, content type).

    Raises:
        UsageError: DATA begins like JSON but is not JSON (a typo must not be
            published as a string), and ``--text`` was not given.
    """
    if text:
        if content_type is not None or data.startswith("@"):
            raise UsageError("--text sends DATA itself as a string: not with "
                             "--content-type or @FILE")
        return data, None
    if data.startswith("@"):
        name = data[1:]
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    else:
        raw = data.encode()
    if content_type is not None:
        return raw, content_type
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        if data.startswith("@"):
            return raw, OCTET
        if data.lstrip()[:1] in ("{", "[", '"'):
            raise UsageError(f"DATA is not valid JSON ({exc}); correct it, or pass --text "
                             "to send it as a string") from None
        return data, None
    return raw, JSON  # valid JSON: sent as written, the hub compacts it


@contextlib.asynccontextmanager
async def _client(args: argparse.Namespace, **options: Any) -> AsyncIterator[AsyncClient]:
    """A client of the hub at ``--url``, once the hub was reached (:func:`_reach`)."""
    async with AsyncClient(args.url, token=args.token, **options) as client:
        await _reach(client, min(REACH_WITHIN, getattr(args, "timeout", REACH_WITHIN)))
        yield client


async def _reach(client: AsyncClient, within: float) -> None:
    """Return once the hub answers ``/healthz`` (any answer will do).

    A command that cannot reach its hub must say so in seconds, not retry in
    silence: the clients' own retries (a publish's ``--timeout``, ``sub``'s
    reconnections) are for a hub that goes away while in use.

    Raises:
        Unavailable: no answer within ``within`` seconds; the message names
            the setting that chose the address.
        UsageError: the URL is not an http(s) one.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.1
    while True:
        left = deadline - loop.time()
        try:
            await client.http.get("/healthz", timeout=max(left, 0.1))
            return
        except httpx.UnsupportedProtocol as exc:
            raise UsageError(f"--url: {exc}") from None
        except httpx.TransportError as exc:
            if loop.time() + delay >= deadline:
                raise Unavailable(
                    f"cannot reach the hub at {client.base_url} "
                    f"({exc or type(exc).__name__}); is it running there? The address "
                    "comes from --url or $HUBBUB_URL") from None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


async def _pub(args: argparse.Namespace) -> int:
    try:
        value, content_type = _payload(args.data, args.content_type, args.text)
    except OSError as exc:
        _complain(f"cannot read {args.data[1:]}: {exc.strerror}")
        return EXIT_USAGE
    async with _client(args, retry_for=args.timeout) as client:
        receipt = await client.publish(args.topic, value, key=args.key,
                                       content_type=content_type)
    _print_json(receipt)
    return 0


async def _sub(args: argparse.Namespace) -> int:
    if args.group is not None:
        return await _sub_group(args)
    if args.start is not None:
        raise UsageError("--start applies to --group only; use --after")
    def reconnecting(error: BaseException | None) -> None:
        why = f"{error}" if error is not None and str(error) else type(error).__name__
        _complain(f"lost the hub at {args.url} ({why}); reconnecting, to resume from "
                  "the last message printed", level="warning")

    async with _client(args) as client, client.subscribe(
        args.topics, after=args.after, transport=args.transport or "auto", on_gap="event",
        on_reconnect=reconnecting,
    ) as sub:
        seen = 0
        async for item in sub:
            _print_json(item)
            if "gap" not in item:
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    return 0


async def _sub_group(args: argparse.Namespace) -> int:
    if args.after is not None:
        raise UsageError("--after does not apply to --group: a group keeps its own "
                         "position; use --start for a new one")
    if args.transport is not None:
        raise UsageError("--group pulls over HTTP; --transport does not apply")
    seen = 0
    async with _client(args) as client:
        group = client.group(args.group, args.topics, start=args.start or "end",
                             lease=args.lease)
        # With --count, never lease more than is left to print.
        batch = min(10, args.count) if args.count is not None else 10
        async with contextlib.aclosing(group.consume(batch)) as deliveries:
            async for delivery in deliveries:
                try:
                    _print_json(delivery.to_dict())
                except _StdoutClosed:
                    with contextlib.suppress(HubbubError):
                        await delivery.nack()
                    raise
                try:
                    await delivery.ack()
                except Conflict:
                    _complain(f"lease {delivery.lease} ran out before its ack; "
                              "the message may be delivered again")
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    return 0


async def _request(args: argparse.Namespace) -> int:
    try:
        value, content_type = _payload(args.data, args.content_type, args.text)
    except OSError as exc:
        _complain(f"cannot read {args.data[1:]}: {exc.strerror}")
        return EXIT_USAGE
    async with _client(args) as client:
        reply = await client.request(args.topic, value, timeout=args.timeout,
                                     content_type=content_type)
    _print_json(reply)
    return 0


async def _upload(args: argparse.Namespace) -> int:
    from .cli_progress import UploadBar

    if args.follow and args.job is None:
        raise UsageError("--follow needs --job")
    bar = UploadBar(args.file.name, sys.stderr)
    async with _client(args, retry_for=args.timeout) as client:
        try:
            result = await client.upload(args.file, job=args.job, chunk_size=args.chunk_size,
                                         on_progress=bar.update, state_file=args.state)
        finally:
            bar.close()
        if args.job is None:
            _print_json(result)
            return 0
        result["job"] = await client.jobs.for_upload(result["id"])
        _print_json(result)
        if result["job"] is None:
            _complain("the upload started no job; see the hub's log")
            return EXIT_ERROR
        if args.follow:
            return await _follow(client, result["job"], quiet=True)
    return 0


async def _follow(client: AsyncClient, job_id: str, *, quiet: bool = False) -> int:
    """Follow a job: a bar on stderr (``quiet``) or each state on stdout."""
    from .cli_progress import JobBar

    bar = JobBar(sys.stderr)
    final: dict[str, Any] = {}
    try:
        async for state in client.jobs.follow(job_id):
            final = state
            if quiet:
                bar.update(state)
            else:
                _print_json(state)
    finally:
        bar.close()
    if quiet:
        _print_json(final)
    if final.get("state") == "failed":
        _complain(f"job {job_id} failed: {final.get('error')}")
        return EXIT_ERROR
    return 0


async def _worker(args: argparse.Namespace) -> int:
    from .client.jobs import load_handler

    handler = load_handler(args.run)
    async with _client(args) as client:
        await client.jobs.work(args.queue, handler, count=args.count, lease=args.lease,
                               on_done=_print_json)
    return 0


async def _job(args: argparse.Namespace) -> int:
    async with _client(args) as client:
        if args.follow:
            return await _follow(client, args.id)
        _print_json(await client.jobs.get(args.id))
    return 0


def _print_json(obj: Any) -> None:
    try:
        sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`hubbub sub ... | head`): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise _StdoutClosed from None
