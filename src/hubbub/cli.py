"""The ``hubbub`` command: ``serve``, ``pub`` and ``sub``.

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
* Exit status: 0 done; 1 the hub refused the request or could not be
  reached, or ``serve`` could not start (port taken, store will not open);
  2 bad arguments or configuration; 130 interrupted.

``serve`` imports the server stack (uvicorn, Starlette) only when it runs, so
``pub`` and ``sub`` start quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from . import __version__, bench
from .client import TRANSPORTS, AsyncClient
from .errors import Conflict, HubbubError, UsageError

DEFAULT_URL = "http://127.0.0.1:8080"
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
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a hub", description="Run a hub.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    serve.add_argument("--port", type=_port, default=8080, help="port (%(default)s)")
    serve.add_argument("--store", default=DEFAULT_STORE, metavar="URL",
                       help="sqlite:///PATH, memory:// or redis://HOST:PORT/DB (%(default)s)")
    serve.add_argument("--config", type=Path, metavar="FILE", help="a hubbub.toml file")
    serve.add_argument("--log-level", default="warning",
                       choices=["critical", "error", "warning", "info", "debug"])
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--insecure", action="store_true",
                       help="allow a non-loopback address although hubbub has no authentication")

    pub = commands.add_parser(
        "pub", help="publish one message",
        description="Publish one message. DATA is sent as JSON when it parses as JSON, "
                    "else as a JSON string; @FILE reads the payload from a file (@- from "
                    "stdin), as JSON when it parses, else as bytes. --content-type sends "
                    "the payload as bytes of that type.",
    )
    pub.add_argument("topic", metavar="TOPIC")
    pub.add_argument("data", metavar="DATA")
    pub.add_argument("--url", default=DEFAULT_URL, help="the hub (%(default)s)")
    pub.add_argument("--key", help="idempotency key (default: a fresh random one)")
    pub.add_argument("--content-type", metavar="TYPE", help="send DATA as bytes of this type")
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
    sub.add_argument("--url", default=DEFAULT_URL, help="the hub (%(default)s)")
    sub.add_argument("--transport", choices=TRANSPORTS,
                     help="the door to use (default: ws; groups pull over HTTP)")
    sub.add_argument("--after", metavar="CURSOR",
                     help="a cursor, 'start' or 'end' (default: end, only new messages)")
    sub.add_argument("--group", metavar="NAME", help="consume as a worker of this group")
    sub.add_argument("--start", choices=["start", "end"],
                     help="where a new group begins (default: end, only new messages)")
    sub.add_argument("--lease", type=_seconds, default=30.0, metavar="SECONDS",
                     help="with --group: seconds to print and ack a message (%(default)s)")
    sub.add_argument("--count", type=_positive_int, metavar="N",
                     help="exit after N messages (default: follow forever)")
    bench.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args, parser)
        if args.command == "bench":
            return bench.run_command(args)
        if args.command == "pub":
            return asyncio.run(_pub(args))
        return asyncio.run(_sub(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except _StdoutClosed:
        return 0
    except HubbubError as exc:
        _complain(exc.message + (f" ({exc.field})" if exc.field else ""))
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


def _complain(message: str) -> None:
    print(f"hubbub: error: {message}", file=sys.stderr, flush=True)


def _serve(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .config import Config, ConfigError
    from .server import configure_logging, is_loopback, serve

    if not args.insecure and not is_loopback(args.host):
        _complain(
            f"refusing to listen on {args.host}: it is not a loopback address and hubbub "
            "has no authentication yet, so anyone who can reach it could read and publish "
            "every topic; listen on 127.0.0.1 (behind a proxy that authenticates), or "
            "pass --insecure to accept that"
        )
        return EXIT_USAGE
    try:
        config = Config.load(args.config) if args.config else Config()
    except ConfigError as exc:
        _complain(f"invalid configuration: {exc}")
        return EXIT_USAGE
    if args.insecure and not is_loopback(args.host):
        print(f"hubbub: warning: listening on {args.host} with no authentication",
              file=sys.stderr, flush=True)
    configure_logging(args.log_level)
    try:
        return serve(args.store, config, host=args.host, port=args.port,
                     log_level=args.log_level, access_log=args.access_log)
    except ValueError as exc:  # an unknown store URL
        _complain(str(exc))
        return EXIT_USAGE
    except OSError as exc:  # the store's directory cannot be made
        _complain(f"cannot prepare the store: {exc}")
        return EXIT_ERROR


def _payload(data: str, content_type: str | None) -> tuple[Any, str | None]:
    """What ``pub`` sends: (value or bytes, content type)."""
    if data.startswith("@"):
        name = data[1:]
        raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    else:
        raw = data.encode()
    if content_type is not None:
        return raw, content_type
    try:
        msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return (data, None) if not data.startswith("@") else (raw, OCTET)
    return raw, JSON  # valid JSON: sent as written, the hub compacts it


async def _pub(args: argparse.Namespace) -> int:
    try:
        value, content_type = _payload(args.data, args.content_type)
    except OSError as exc:
        _complain(f"cannot read {args.data[1:]}: {exc.strerror}")
        return EXIT_USAGE
    async with AsyncClient(args.url, retry_for=args.timeout) as client:
        receipt = await client.publish(args.topic, value, key=args.key,
                                       content_type=content_type)
    _print_json(receipt)
    return 0


async def _sub(args: argparse.Namespace) -> int:
    if args.group is not None:
        return await _sub_group(args)
    if args.start is not None:
        raise UsageError("--start applies to --group only; use --after")
    async with AsyncClient(args.url) as client, client.subscribe(
        args.topics, after=args.after, transport=args.transport or "ws"
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
    async with AsyncClient(args.url) as client:
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


def _print_json(obj: Any) -> None:
    try:
        sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`hubbub sub ... | head`): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise _StdoutClosed from None
