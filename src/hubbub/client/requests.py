"""The responder side of request-reply: a consumer group on the request topic.

::

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        await hub.respond("svc.echo", lambda data: {"echo": data})

The protocol is in ``docs/requests.md``: a request is a message on its topic
whose data is an envelope ``{request, deadline, data}`` (plus
``content_type``, with base64 ``data``, for a non-JSON request); the reply is
``POST /v1/replies/{request}``. Responders pull requests through a consumer
group, so several of them share the load and a request whose responder died
comes back to another one when its lease runs out.

Per request, in this order: skip it (ack) when its deadline has passed, since
the hub would refuse the reply anyway; call the handler; store the reply; ack.
A reply refused as already given (``409``), too late (``410``) or no longer
waited for (``404``: the caller left) is acked too: the request is settled
either way. A handler that raises answers with an *error reply* (its
exception's type and message), so the caller gets a ``502``
``responder-error`` at once instead of a timeout; the request is acked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Protocol

from ..protocol import errors
from .base import ClientBase
from .groups import Delivery, Group


class Responding(ClientBase, Protocol):
    """What a responder uses of the :class:`~hubbub.client.AsyncClient`."""

    def group(self, name: str, topics: str | Sequence[str] | None = None, *,
              start: Literal["start", "end"] = "end", lease: float = 30.0) -> Group: ...

    async def reply(self, request_id: str, data: Any, *,
                    content_type: str | None = None) -> dict[str, Any]: ...

    async def reply_error(self, request_id: str, message: str) -> dict[str, Any]: ...


log = logging.getLogger("hubbub.client")
#: The longest message an error reply may carry (characters).
MAX_ERROR = 1000
_TOKEN_SAFE = re.compile(r"[^A-Za-z0-9_\-:@]")


def default_group(topic: str) -> str:
    """The consumer group responders of ``topic`` share unless told otherwise."""
    return ("responders-" + _TOKEN_SAFE.sub("-", topic))[:64]


def request_data(envelope: Any) -> Any:
    """The caller's payload inside a request envelope (bytes when it was not JSON).

    Raises:
        InvalidRequest: the message is no request envelope.
    """
    if not isinstance(envelope, dict) or not isinstance(envelope.get("request"), str):
        raise errors.InvalidRequest("message is not a request envelope", field="data")
    data = envelope.get("data")
    if "content_type" in envelope:
        try:
            return base64.b64decode(str(data), validate=True)
        except (binascii.Error, ValueError):
            raise errors.InvalidRequest("request data is not base64", field="data") from None
    return data


async def _call(handler: Callable[[Any], Any | Awaitable[Any]], data: Any) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(data)
    result = await asyncio.to_thread(handler, data)
    if inspect.isawaitable(result):
        result = await result
    return result


async def answer(client: Responding, delivery: Delivery,
                 handler: Callable[[Any], Any | Awaitable[Any]]) -> bool:
    """Handle one leased request and settle it; True when a reply was stored."""
    envelope = delivery.data
    try:
        data = request_data(envelope)
    except errors.InvalidRequest as exc:
        log.warning("%r: %s; acked and dropped", delivery, exc)
        await delivery.ack()
        return False
    deadline = envelope.get("deadline")
    if isinstance(deadline, int) and deadline <= time.time() * 1000:
        await delivery.ack()  # nobody waits for it any more
        return False
    stored = True
    try:
        try:
            result = await _call(handler, data)
        except Exception as exc:
            log.exception("handler failed on %r", delivery)
            # The caller gets the error now rather than a timeout later.
            await client.reply_error(envelope["request"], error_message(exc))
            stored = False
        else:
            await client.reply(envelope["request"], result)
    except (errors.Conflict, errors.Expired, errors.NotFound):
        stored = False  # answered by another responder, too late, or its caller left
    await delivery.ack()
    return stored


def error_message(exc: BaseException) -> str:
    """What a caller is told of a handler's exception: its type and message,
    cut to the 1000 characters an error reply may carry."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR]


async def respond(
    client: Responding,
    topic: str,
    handler: Callable[[Any], Any | Awaitable[Any]],
    *,
    group: str | None = None,
    count: int | None = None,
    lease: float = 30.0,
) -> int:
    """Answer requests on ``topic`` until cancelled or ``count`` were answered.

    See :meth:`hubbub.client.AsyncClient.respond`.
    """
    if count is not None and count < 1:
        raise errors.UsageError("count must be at least 1")
    # A new group starts at the start of the topic's history, so requests made
    # while the first responder was still connecting are answered too; old
    # ones are past their deadline and only acked.
    workers = client.group(group or default_group(topic), [topic], start="start", lease=lease)
    answered = 0
    async with contextlib.aclosing(workers.consume(1)) as deliveries:
        async for delivery in deliveries:
            if await answer(client, delivery, handler):
                answered += 1
                if count is not None and answered >= count:
                    break
    return answered
