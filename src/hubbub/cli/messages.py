"""``hubbub pub``, ``hubbub sub`` (and ``sub --group``) and ``hubbub request``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

import msgspec

from ..client import TRANSPORTS
from ..protocol.errors import Conflict, HubbubError, UsageError
from .common import (
    StdoutClosed,
    add_client_options,
    complain,
    hub_client,
    positive_int,
    print_json,
    seconds,
)

JSON = "application/json"
OCTET = "application/octet-stream"


def add_parsers(commands: Any) -> None:
    """Add ``pub``, ``sub`` and ``request`` to the ``hubbub`` command's subparsers."""
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
    pub.add_argument("--timeout", type=seconds, default=30.0, metavar="SECONDS",
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
    sub.add_argument("--lease", type=seconds, default=30.0, metavar="SECONDS",
                     help="with --group: seconds to print and ack a message (%(default)s)")
    sub.add_argument("--count", type=positive_int, metavar="N",
                     help="exit after N messages (default: follow forever)")
    req = commands.add_parser(
        "request", help="send a request and print the reply",
        description="Publish a request to TOPIC and wait for one responder's reply "
                    "(request-reply, docs/requests.md); print the reply as one JSON line. "
                    "DATA is sent as for pub.",
    )
    req.add_argument("topic", metavar="TOPIC")
    req.add_argument("data", metavar="DATA")
    req.add_argument("--timeout", type=seconds, default=5.0, metavar="SECONDS",
                     help="wait this long for the reply (%(default)s)")
    req.add_argument("--content-type", metavar="TYPE", help="send DATA as bytes of this type")
    req.add_argument("--text", action="store_true",
                     help="send DATA as a JSON string, whatever it looks like")
    for command in (pub, sub, req):
        add_client_options(command)


def _payload(data: str, content_type: str | None, text: bool = False
             ) -> tuple[Any, str | None]:
    """What ``pub`` sends: (value or bytes, content type).

    Raises:
        UsageError: DATA begins like JSON but is not JSON (a typo must not be
            published as a string), and ``--text`` was not given; or the
            file of ``@FILE`` cannot be read.
    """
    if text:
        if content_type is not None or data.startswith("@"):
            raise UsageError("--text sends DATA itself as a string: not with "
                             "--content-type or @FILE")
        return data, None
    if data.startswith("@"):
        name = data[1:]
        try:
            raw = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read {name}: {exc.strerror}") from None
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


async def run_pub(args: argparse.Namespace) -> int:
    value, content_type = _payload(args.data, args.content_type, args.text)
    async with hub_client(args, retry_for=args.timeout) as client:
        receipt = await client.publish(args.topic, value, key=args.key,
                                       content_type=content_type)
    print_json(receipt)
    return 0


async def run_sub(args: argparse.Namespace) -> int:
    if args.group is not None:
        return await run_sub_group(args)
    if args.start is not None:
        raise UsageError("--start applies to --group only; use --after")
    def reconnecting(error: BaseException | None) -> None:
        why = f"{error}" if error is not None and str(error) else type(error).__name__
        complain(f"lost the hub at {args.url} ({why}); reconnecting, to resume from "
                  "the last message printed", level="warning")

    async with hub_client(args) as client, client.subscribe(
        args.topics, after=args.after, transport=args.transport or "auto", on_gap="event",
        on_reconnect=reconnecting,
    ) as sub:
        seen = 0
        async for item in sub:
            print_json(item)
            if "gap" not in item:
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    return 0


async def run_sub_group(args: argparse.Namespace) -> int:
    if args.after is not None:
        raise UsageError("--after does not apply to --group: a group keeps its own "
                         "position; use --start for a new one")
    if args.transport is not None:
        raise UsageError("--group pulls over HTTP; --transport does not apply")
    seen = 0
    async with hub_client(args) as client:
        group = client.group(args.group, args.topics, start=args.start or "end",
                             lease=args.lease)
        # With --count, never lease more than is left to print.
        batch = min(10, args.count) if args.count is not None else 10
        async with contextlib.aclosing(group.consume(batch)) as deliveries:
            async for delivery in deliveries:
                try:
                    print_json(delivery.to_dict())
                except StdoutClosed:
                    with contextlib.suppress(HubbubError):
                        await delivery.nack()
                    raise
                try:
                    await delivery.ack()
                except Conflict:
                    complain(f"lease {delivery.lease} ran out before its ack; "
                              "the message may be delivered again")
                seen += 1
                if args.count is not None and seen >= args.count:
                    break
    return 0


async def run_request(args: argparse.Namespace) -> int:
    value, content_type = _payload(args.data, args.content_type, args.text)
    async with hub_client(args) as client:
        reply = await client.request(args.topic, value, timeout=args.timeout,
                                     content_type=content_type)
    print_json(reply)
    return 0


