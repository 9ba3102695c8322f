"""``hubbub admin``: the admin API from the command line (``docs/operations.md``).

::

    hubbub admin connections                      # one JSON line per connection
    hubbub admin disconnect ID
    hubbub admin topic-purge TOPIC
    hubbub admin topic-delete TOPIC
    hubbub admin job-cancel ID
    hubbub admin presence                         # one JSON line per entry
    hubbub admin presence --drop TOPIC CONN

Each needs an admin token (``--token`` or ``$HUBBUB_TOKEN``) unless the hub
runs with authentication off.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from ..client import AsyncClient

ACTIONS = ("connections", "disconnect", "topic-purge", "topic-delete", "job-cancel",
           "presence")


def add_parser(commands: Any, default_url: str) -> None:
    """Add ``admin`` to the ``hubbub`` command's subparsers."""
    admin = commands.add_parser(
        "admin", help="operate a running hub or cluster (admin token needed)",
        description="The admin API: list and disconnect connections, purge or delete a topic, "
                    "cancel a job, see and drop presence entries. Lists print one JSON "
                    "line per item; the others print the hub's answer.")
    admin.add_argument("action", choices=ACTIONS, metavar="ACTION",
                       help="one of " + ", ".join(ACTIONS))
    admin.add_argument("args", nargs="*", metavar="ARG",
                       help="disconnect ID | topic-purge TOPIC | topic-delete TOPIC | "
                            "job-cancel ID")
    admin.add_argument("--drop", nargs=2, metavar=("TOPIC", "CONN"),
                       help="with presence: drop this entry")
    admin.add_argument("--url", default=default_url, help="the hub (%(default)s)")
    admin.add_argument("--token", default=os.environ.get("HUBBUB_TOKEN") or None,
                       help="an admin JWT or API key (default: $HUBBUB_TOKEN)")


async def run(args: argparse.Namespace, out: Callable[[Any], None]) -> int:
    """Carry out ``hubbub admin``; ``out`` prints one JSON line.

    Returns:
        0, or 2 for arguments that do not fit the action.
    """
    wanted = {"disconnect": 1, "topic-purge": 1, "topic-delete": 1,
              "job-cancel": 1}.get(args.action, 0)
    if len(args.args) != wanted or (args.drop and args.action != "presence"):
        raise argparse.ArgumentError(None, f"admin {args.action}: wrong arguments")
    async with AsyncClient(args.url, token=args.token) as client:
        admin = client.admin
        if args.action == "connections":
            for conn in (await admin.connections())["connections"]:
                out(conn)
        elif args.action == "disconnect":
            gone = await admin.disconnect(args.args[0])
            out({"id": args.args[0], "gone": gone})
        elif args.action == "topic-purge":
            out(await admin.purge_topic(args.args[0]))
        elif args.action == "topic-delete":
            await admin.delete_topic(args.args[0])
            out({"topic": args.args[0], "deleted": True})
        elif args.action == "job-cancel":
            out(await admin.cancel_job(args.args[0]))
        elif args.drop:
            await admin.drop_presence(*args.drop)
            out({"topic": args.drop[0], "conn": args.drop[1], "dropped": True})
        else:
            for entry in (await admin.presence())["present"]:
                out(entry)
    return 0
