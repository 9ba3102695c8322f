"""The consumer-group door on HTTP: pull, ack, nack, extend, info and delete; and
the checks the WebSocket group subscriptions (:mod:`hubbub.transports.ws.groups`)
share with it.

The rules of a delivery are in :mod:`hubbub.protocol.leases`, the core API in
:mod:`hubbub.core.groups`; the protocol is in ``docs/groups.md``. This module
parses, calls ``hub.groups``, and encodes.

Decisions a client can rely on:

* A pull answers ``{"messages": [...]}``; each item is the message object of
  every door with ``lease``, ``attempt`` and ``deadline`` (ms) in front. It is
  spliced from the message's cached JSON (:func:`hubbub.protocol.wire.delivery_json`).
* A settle (ack, nack, extend) is judged per lease id
  (:mod:`hubbub.protocol.leases`, invariant "only the current lease
  settles"): ``ok``, ``expired`` (the lease was replaced: another worker
  may hold the message now) or ``unknown`` (never given, or already
  settled). Input is checked first, so a malformed request changes nothing
  (400). If at least one id is ``ok`` the answer is ``200`` with every id's
  outcome: ids are independent, and the ones not ``ok`` changed nothing. If
  none is ``ok``, nothing changed at all and the answer is ``409`` (``code``
  ``conflict``, the outcomes in ``results``), so that a lone stale or foreign
  ack is an error a client cannot overlook. Repeated ids count once. The
  same holds for ``ack``, ``nack`` and ``extend`` ops on a WebSocket.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..core import Hub
from ..core.groups import MAX_IDS, MAX_LEASE, MAX_PULL
from ..core.hub import MAX_TOPICS_PER_SUBSCRIPTION
from ..core.values import GroupInfo
from ..protocol import cursor, wire
from ..protocol.depth import check_depth
from ..protocol.errors import Conflict, Forbidden, HubbubError, InvalidRequest
from ..protocol.leases import Outcome, dead_letter_topic, parse_lease_id, validate_group
from ..protocol.message import JSON
from ..protocol.topics import validate_pattern
from .auth import Action, authorize, principal_of
from .httpkit import (
    SECONDS_RE,
    UINT_RE,
    hub_of,
    json_response,
    query_one,
    query_wait,
    read_body,
    while_connected,
)

log = logging.getLogger("hubbub")

#: A settle body holds at most MAX_IDS ids of ~33 bytes and an error text.
MAX_SETTLE_BODY = 128 << 10


class _Ack(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]


class _Nack(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]
    delay: float = 0.0
    error: str | None = None


class _Extend(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[str]
    lease: float = wire.DEFAULT_LEASE


_BODIES: dict[str, Any] = {
    "ack": msgspec.json.Decoder(_Ack).decode,
    "nack": msgspec.json.Decoder(_Nack).decode,
    "extend": msgspec.json.Decoder(_Extend).decode,
}


# -- shared checks --------------------------------------------------------------------


def check_duration(value: float, name: str, low: float, high: float) -> float:
    """Check a duration before anything is settled (the core checks again)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{name} must be a number of seconds", field=name)
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be from {low:g} to {high:g} seconds", field=name)
    return value


def check_ids(ids: Sequence[str]) -> list[str]:
    """The distinct lease ids, in order; every one must be well formed.

    Raises:
        InvalidRequest: none, too many, or a malformed one (``field`` names it).
    """
    if not 1 <= len(ids) <= MAX_IDS:
        raise InvalidRequest(f"ids must be a list of 1 to {MAX_IDS} lease ids", field="ids")
    for i, lease_id in enumerate(ids):
        parse_lease_id(lease_id, field=f"ids[{i}]")
    return list(dict.fromkeys(ids))


def check_topics(patterns: Sequence[str], field: str) -> None:
    """Validate a group's patterns (named ``topics[i]`` on WebSockets, ``topic`` on HTTP).

    The core subscribes to them whenever a pull waits, so a group with more
    than a subscription may follow would be created but could never wait.
    """
    if len(patterns) > MAX_TOPICS_PER_SUBSCRIPTION:
        raise InvalidRequest(
            f"at most {MAX_TOPICS_PER_SUBSCRIPTION} topics per group", field=field)
    for i, pattern in enumerate(patterns):
        validate_pattern(pattern, field=f"{field}[{i}]" if field == "topics" else field)


def results_or_conflict(results: dict[str, Outcome]) -> dict[str, str]:
    """Outcomes as the wire says them; :class:`Conflict` when none is ``ok``."""
    out = {lease_id: o.value for lease_id, o in results.items()}
    if Outcome.OK not in results.values():
        raise Conflict("no lease was settled: each one is expired or unknown",
                       field="ids", results=out)
    return out


def describe(hub: Hub, g: GroupInfo) -> dict[str, Any]:
    """The group as ``GET /v1/groups/{group}`` shows it.

    ``cursor`` is a watermark cursor (:mod:`hubbub.protocol.cursor`, invariant
    "store epoch names a position") at the newest message the group has
    taken: polling the group's topics after it shows what the group has not
    taken yet.
    """
    return {
        "group": g.name, "topics": list(g.patterns), "pending": g.pending,
        "cursor": cursor.encode(hub.store_epoch, 0, g.delivered_seq),
        "max_deliver": hub.config.for_topic(g.patterns[0]).max_deliver,
        "dead_letter_topic": dead_letter_topic(g.name), "created": g.created,
    }


# -- HTTP -----------------------------------------------------------------------------


def _group(request: Request) -> str:
    return validate_group(request.path_params["group"])


async def _authorize(request: Request, name: str, topics: Sequence[str]) -> None:
    """Consuming a group needs its name allowed (:mod:`hubbub.core.auth`,
    invariant "groups are judged as topics")
    and is reading its topics: the ones named, else the group's own."""
    principal = principal_of(request)
    hub_of(request).auth.check_group(principal, name)
    if principal.admin:
        return  # spare the lookup
    if not topics:
        topics = (await hub_of(request).groups.info(name)).patterns
    authorize(request, Action.SUBSCRIBE, topics)


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    text = query_one(request, name)
    if text is None:
        return default
    if UINT_RE.fullmatch(text) is None or not 1 <= int(text) <= high:
        raise InvalidRequest(f"{name} must be an integer from 1 to {high}", field=name)
    return int(text)


def _lease_param(request: Request) -> float:
    text = query_one(request, "lease")
    if text is None:
        return wire.DEFAULT_LEASE
    if SECONDS_RE.fullmatch(text) is None:
        raise InvalidRequest(f"lease must be from 0.1 to {MAX_LEASE:g} seconds", field="lease")
    return float(text)  # the core checks the range


def _start_param(request: Request) -> Literal["start", "end"]:
    text = query_one(request, "start")
    if text is None or text == "end":
        return "end"
    if text == "start":
        return "start"
    raise InvalidRequest("start must be start or end", field="start")


async def pull(request: Request) -> Response:
    hub = hub_of(request)
    name = _group(request)
    topics = request.query_params.getlist("topic")
    check_topics(topics, "topic")
    await _authorize(request, name, topics)
    call = hub.groups.pull(
        name, topics or None,
        max_messages=_int_param(request, "max", 1, MAX_PULL),
        wait=query_wait(request, hub.config.server.max_wait),
        lease=_lease_param(request),
        start=_start_param(request),
    )
    left, task = await while_connected(request, call)
    if not task.done():
        return Response(status_code=204)  # the client left; nobody reads this answer
    leases = task.result()
    if left and leases:
        # The client left as the pull took its messages: give them back now
        # rather than when their leases run out.
        with contextlib.suppress(HubbubError):
            await hub.groups.nack(name, [x.lease_id for x in leases])
    body = b",".join(wire.delivery_json(x.message, x.lease_id, x.attempts, x.deadline)
                     for x in leases)
    return Response(b'{"messages":[' + body + b"]}", media_type=JSON)


async def _settle_body(request: Request, action: str) -> Any:
    body = await read_body(request, MAX_SETTLE_BODY)
    check_depth(body, hub_of(request).config.limits.json_depth)
    try:
        return _BODIES[action](body)
    except msgspec.ValidationError as exc:
        err = wire.explain(exc)
        err.field = err.field or "body"
        raise err from None
    except msgspec.DecodeError:
        raise InvalidRequest("malformed JSON", field="body") from None


def _settler(
    action: Literal["ack", "nack", "extend"],
) -> Callable[[Request], Awaitable[Response]]:
    async def settle(request: Request) -> Response:
        hub = hub_of(request)
        name = _group(request)
        body = await _settle_body(request, action)
        ids = check_ids(body.ids)
        await _authorize(request, name, [])
        kw: dict[str, Any] = {}
        if isinstance(body, _Nack):
            kw = {"delay": body.delay, "error": body.error}
        elif isinstance(body, _Extend):
            kw = {"lease": body.lease}
        results = await hub.groups.settle(name, ids, action, **kw)
        return json_response({"results": results_or_conflict(results)})

    settle.__name__ = action
    return settle


async def info(request: Request) -> Response:
    hub = hub_of(request)
    name = _group(request)
    principal = principal_of(request)
    if not principal.admin:  # an admin may look at the job system's groups too
        hub.auth.check_group(principal, name)
    group = await hub.groups.info(name)
    authorize(request, Action.SUBSCRIBE, group.patterns)
    return json_response(describe(hub, group))


async def delete(request: Request) -> Response:
    """``DELETE /v1/groups/{group}`` (admins only): forget the group, its position
    and pending entries; its dead-letter topic stays. 204, or 404."""
    name = _group(request)
    if not principal_of(request).admin:
        raise Forbidden("only an admin may delete a group", field="group")
    await hub_of(request).groups.delete(name)
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/v1/groups/{group}", info, methods=["GET"]),
    Route("/v1/groups/{group}", delete, methods=["DELETE"]),
    Route("/v1/groups/{group}/pull", pull, methods=["POST"]),
    Route("/v1/groups/{group}/ack", _settler("ack"), methods=["POST"]),
    Route("/v1/groups/{group}/nack", _settler("nack"), methods=["POST"]),
    Route("/v1/groups/{group}/extend", _settler("extend"), methods=["POST"]),
]
