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
  terminal (nothing otherwise; :mod:`hubbub.cli.progress`) and prints
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
  would run with (:mod:`hubbub.cli.settings`: the file, then ``HUBBUB_*``
  variables, then options), secrets masked.
* A client command that cannot reach its hub says so within
  :data:`~hubbub.cli.common.REACH_WITHIN` seconds (exit 1); ``sub`` reconnects by itself only
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
from collections.abc import Sequence

from .. import __version__, bench
from ..protocol.errors import Forbidden, HubbubError, Unauthorized, UsageError
from . import admin, jobs, messages, serve
from .common import (
    DEFAULT_URL,
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    StdoutClosed,
    complain,
    print_json,
)
from .settings import Parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hubbub", description="A real-time messaging hub: one durable log, many doors.",
        epilog="exit status: 0 done, 1 the hub refused or is unreachable (or could not "
               "start), 2 bad arguments or configuration, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"hubbub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=Parser)

    serve.add_parsers(commands)
    messages.add_parsers(commands)
    jobs.add_parsers(commands)
    bench.add_parser(commands)
    admin.add_parser(commands, DEFAULT_URL)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return serve.run_serve(args, parser)
        if args.command == "config":
            return serve.run_config(args)
        if args.command == "token":
            return serve.run_token(args)
        if args.command == "bench":
            return bench.run_command(args)
        if args.command == "pub":
            return asyncio.run(messages.run_pub(args))
        if args.command == "upload":
            return asyncio.run(jobs.run_upload(args))
        if args.command == "request":
            return asyncio.run(messages.run_request(args))
        if args.command == "worker":
            return asyncio.run(jobs.run_worker(args))
        if args.command == "job":
            return asyncio.run(jobs.run_job(args))
        if args.command == "admin":
            try:
                return asyncio.run(admin.run(args, print_json))
            except argparse.ArgumentError as exc:
                parser.error(str(exc))
        return asyncio.run(messages.run_sub(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except StdoutClosed:
        return 0
    except HubbubError as exc:
        complain(exc.message + (f" ({exc.field})" if exc.field else "") + _hint(exc))
        return EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR


def _hint(exc: HubbubError) -> str:
    """What to change when the hub refused who we are."""
    if isinstance(exc, Unauthorized):
        return "; give a token with --token or $HUBBUB_TOKEN (hubbub token mints one)"
    if isinstance(exc, Forbidden):
        return "; the token given (--token or $HUBBUB_TOKEN) does not allow this"
    return ""


