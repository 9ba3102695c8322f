"""What the commands of ``hubbub`` share: exit statuses, argument types, how a
client command reaches its hub, and how results and complaints are printed."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec

from ..client import AsyncClient
from ..protocol.errors import Unavailable, UsageError

DEFAULT_URL = "http://127.0.0.1:8080"
#: How long a client command tries to reach the hub before it says it cannot.
REACH_WITHIN = 3.0
EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class StdoutClosed(Exception):
    """Whoever read our output has gone; nothing is wrong."""


def positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


def add_client_options(command: argparse.ArgumentParser) -> None:
    """``--url`` and ``--token``, which every client command takes."""
    command.add_argument(
        "--url", default=os.environ.get("HUBBUB_URL") or DEFAULT_URL,
        help=f"the hub (default: $HUBBUB_URL or {DEFAULT_URL})")
    command.add_argument(
        "--token", default=os.environ.get("HUBBUB_TOKEN") or None,
        help="a JWT or API key for the hub (default: $HUBBUB_TOKEN)")


def complain(message: str, *, level: str = "error") -> None:
    print(f"hubbub: {level}: {message}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def hub_client(args: argparse.Namespace, **options: Any) -> AsyncIterator[AsyncClient]:
    """A client of the hub at ``--url``, once the hub was reached (:func:`_reach`)."""
    async with AsyncClient(args.url, token=args.token, **options) as client:
        await reach(client, min(REACH_WITHIN, getattr(args, "timeout", REACH_WITHIN)))
        yield client


async def reach(client: AsyncClient, within: float) -> None:
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


def print_json(obj: Any) -> None:
    try:
        sys.stdout.write(msgspec.json.encode(obj).decode() + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`hubbub sub ... | head`): stop quietly, and
        # point stdout at /dev/null so the interpreter's final flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise StdoutClosed from None

