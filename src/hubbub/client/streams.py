"""One reader per door: each reads a subscription from a cursor until the stream ends.

A reader is an async generator of :class:`Event`. It does not reconnect; the
:class:`~hubbub.client.aio.Subscription` above it does, from the last cursor
a reader handed out. So every reader keeps the same promises.

Invariants
----------
"every item carries its cursor": Every message and gap goes up with the
cursor to resume from after it, and so does every bare cursor the hub
volunteers (a poll page's ``cursor``, an SSE ``id:``, the WebSocket ``ok``
reply, ``close`` frame and close reason), so a reconnect after *nothing* was
received still resumes exactly.
"deliberate ends are quiet": A stream the hub ends on purpose (SSE
``close``, WebSocket 1012 on drain, 4008 for a slow consumer) ends the reader
quietly: reconnecting is the right answer. Network failures propagate as the
network library raised them; the subscription retries those too.
"refusals raise their class": What the hub refused (a problem document, an
``err`` frame, a 44xx close code) is raised as the
:mod:`hubbub.protocol.errors` class it names; the subscription retries only
those marked ``temporary``.
"missing door is refused": A door that is not there (an answer that is no
upgrade or no event stream, a 4xx that is not a hubbub problem: see
:func:`~hubbub.client.errors.refusal`) raises
:class:`~hubbub.client.errors.DoorRefused`, so ``transport="auto"`` moves on
to the next door.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import (
    ConnectionClosedError,
    InvalidHandshake,
    InvalidMessage,
    InvalidStatus,
)
from websockets.typing import Subprotocol

from ..protocol import errors
from ..protocol.status import error_for_close
from .errors import (
    DoorRefused,
    cursor_in,
    door_error,
    error_from_problem,
    error_from_response,
    refusal,
)
from .sse import SSEDecoder

SUBPROTOCOL = "hubbub.v1.json"
#: Close codes after which reconnecting cannot help (RFC 6455 §7.4.1 and hubbub's 44xx).
_decode = msgspec.json.decode
_encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class Event:
    """What a reader hands up: a message, a gap, or only a new cursor (invariant "every item carries its cursor")."""

    kind: Literal["message", "gap", "cursor"]
    cursor: str | None
    body: dict[str, Any] = field(default_factory=dict)


def _gap(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: doc[k] for k in ("topic", "from", "to", "reason") if k in doc}


def _real_cursor(after: str) -> bool:
    return after not in ("start", "end")


def single_topic(topics: Sequence[str]) -> str | None:
    """The topic, when the subscription is one plain topic (it gets the per-topic door)."""
    if len(topics) == 1 and "*" not in topics[0] and ">" not in topics[0]:
        return topics[0]
    return None


def _paths(topics: Sequence[str], single: str, many: str) -> tuple[str, list[tuple[str, str]]]:
    topic = single_topic(topics)
    if topic is not None:
        return single.format(quote(topic, safe=":@")), []
    return many, [("topic", t) for t in topics]


async def read_poll(
    http: httpx.AsyncClient,
    topics: Sequence[str],
    after: str,
    *,
    wait: float = 0.0,
    interval: float = 1.0,
    limit: int | None = None,
) -> AsyncGenerator[Event, None]:
    """Short polls (``wait == 0``, one every ``interval`` s when idle) or long polls.

    ``limit`` (default: the hub's page size) and ``wait`` must be within the
    hub's ``max_limit`` and ``max_wait``; a ``wait`` the hub refuses is halved
    until it is accepted.
    """
    path, params = _paths(topics, "/v1/topics/{}/messages", "/v1/messages")
    if limit is not None:
        params.append(("limit", str(limit)))
    loop = asyncio.get_running_loop()
    cursor = after
    while True:
        query = [*params, ("after", cursor)]
        if wait:
            query.append(("wait", f"{wait:g}"))
        began = loop.time()
        timeout = httpx.Timeout(10.0, read=wait + 10.0)
        r = await http.get(path, params=tuple(query), timeout=timeout)
        if r.status_code != 200:
            err = await error_from_response(r)
            resume = err.extra.get("cursor")
            if isinstance(err, errors.GapError) and isinstance(resume, str):
                # The per-topic door says a gap with 409 and where to go on.
                cursor = resume
                yield Event("gap", cursor, _gap(err.extra))
                continue
            if isinstance(err, errors.InvalidRequest) and err.field == "wait" and wait > 1:
                wait = int(wait / 2)  # this hub's max_wait is lower
                continue
            raise refusal("longpoll" if wait else "poll", r.status_code, err.problem) or err
        page = _decode(r.content)
        for gap in page.get("gaps") or ():
            yield Event("gap", None, _gap(gap))
        for msg in page["messages"]:
            yield Event("message", msg["cursor"], msg)
        cursor = page["cursor"]
        yield Event("cursor", cursor)
        # A long poll that came back empty at once (a hub that does not hold
        # requests) must not turn into a busy loop: treat it as a short poll.
        idle = not page["messages"] and loop.time() - began < min(wait, interval) / 2
        if idle or (not wait and not page["messages"]):
            await asyncio.sleep(interval)


async def read_sse(
    http: httpx.AsyncClient,
    topics: Sequence[str],
    after: str,
    *,
    read_timeout: float = 60.0,
) -> AsyncGenerator[Event, None]:
    """One Server-Sent Events stream, resumed by ``Last-Event-ID`` when we have a cursor.

    ``read_timeout`` must exceed the hub's heartbeat interval (15 s by default).
    """
    path, params = _paths(topics, "/v1/topics/{}/events", "/v1/events")
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if _real_cursor(after):
        # WHATWG HTML §9.2.4: a reconnecting user agent sends the last event
        # ID in a `Last-Event-ID` header; hubbub's event IDs are cursors.
        headers["Last-Event-ID"] = after
    else:
        params.append(("after", after))
    timeout = httpx.Timeout(10.0, read=read_timeout)
    async with http.stream("GET", path, params=tuple(params), headers=headers, timeout=timeout) as r:
        if r.status_code != 200:
            raise await door_error(r, "sse")
        if not r.headers.get("content-type", "").startswith("text/event-stream"):
            # A proxy (or a login page) answered in the stream's place.
            raise refusal("sse", r.status_code, None) or DoorRefused("no event stream")
        decoder = SSEDecoder()
        async for line in r.aiter_lines():
            ev = decoder.receive_line(line)
            if ev is None:
                continue
            cursor = ev.id or None
            if ev.event == "message":
                msg = _decode(ev.data)
                yield Event("message", msg.get("cursor", cursor), msg)
            elif ev.event == "gap":
                yield Event("gap", cursor, _gap(_decode(ev.data)))
            elif ev.event == "error":
                raise error_from_problem(_decode(ev.data))
            elif ev.event == "close":
                yield Event("cursor", cursor)
                return  # invariant "deliberate ends are quiet": the hub is draining; reconnect elsewhere or later
            else:  # "ready" and event types this client does not know yet
                yield Event("cursor", cursor)


async def read_ws(
    url: str,
    topics: Sequence[str],
    after: str,
    *,
    open_timeout: float = 10.0,
    headers: Mapping[str, str] | None = None,
) -> AsyncGenerator[Event, None]:
    """One WebSocket connection with one ``sub`` (JSON subprotocol); ``headers`` go
    on the upgrade (``Authorization``)."""
    try:
        # max_size=None: the hub bounds its own frames (its max message size).
        async with connect(url, subprotocols=[Subprotocol(SUBPROTOCOL)], open_timeout=open_timeout,
                           close_timeout=5.0, max_size=None, additional_headers=headers) as ws:
            sub = {"op": "sub", "id": 1, "topics": list(topics), "after": after}
            await ws.send(_encode(sub).decode())  # a text frame, as hubbub.v1.json wants
            try:
                async for frame in ws:
                    obj = _decode(frame)
                    op = obj.pop("op", None)
                    if op == "msg":
                        yield Event("message", obj.get("cursor"), obj)
                    elif op == "gap":
                        yield Event("gap", obj.get("cursor"), _gap(obj))
                    elif op == "ok":
                        yield Event("cursor", obj.get("cursor"))
                    elif op == "close":
                        # The hub's last word before a deliberate close: the
                        # cursor of each subscription (we hold one).
                        subs = obj.get("subs") or {}
                        for resume in subs.values() if isinstance(subs, dict) else ():
                            if isinstance(resume, str):
                                yield Event("cursor", resume)
                    elif op == "err":
                        raise error_from_problem(obj)
            except ConnectionClosedError:
                pass  # an abnormal close still has a code and reason to read below
            code, reason = ws.close_code, ws.close_reason or ""
    except InvalidStatus as exc:
        response = exc.response
        try:
            doc = _decode(response.body or b"{}")
        except msgspec.DecodeError:
            doc = {}
        status = response.status_code
        raise refusal("ws", status, doc) or error_from_problem(doc, status) from None
    except InvalidMessage:
        raise  # no HTTP answer at all (the hub went away mid-handshake): temporary
    except InvalidHandshake as exc:
        # An answer that is no WebSocket upgrade (a 101 without the right
        # headers, an unknown subprotocol): something in between refuses it.
        refused = DoorRefused(f"the ws door is refused ({exc})", transport="ws")
        refused.status = 0
        raise refused from None
    # RFC 6455 §7.1.6: the close reason is UTF-8 text; hubbub puts the resume cursor there.
    resume = cursor_in(reason)
    if resume is not None:
        yield Event("cursor", resume)
    fatal = None if code is None else error_for_close(code)
    # Closes for bad input are final; the others (1012 restart, 1013 store
    # failure, 4008 slow consumer, a dropped line) are resumed from the cursor.
    if code is not None and (
        (fatal is not None and issubclass(fatal, errors.PeerError)) or 4400 <= code < 4500
    ):
        cls = fatal or errors.PeerError
        raise cls(reason or f"connection closed with code {code}")
