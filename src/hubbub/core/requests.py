"""Request-reply over topics: a caller waits for one responder's reply.

Nothing is kept in memory between a request and its reply, so any node of a
cluster (on any engine) can take the reply and the caller's node still gets
it: everything needed travels in the request id and the topics::

    reply = await hub.requests.request("svc.echo", b'{"n":1}', timeout=5)

    # a worker, taking requests through a consumer group:
    for lease in await hub.groups.pull("echoers", ["svc.echo"], wait=30):
        env = lease.message.value()
        await hub.requests.reply(env["request"], b'{"echo":1}')
        await hub.groups.ack("echoers", [lease.lease_id])

The rules:

1. A request id is ``<deadline ms>.<32 hex>``; the caller's inbox is the topic
   ``_inbox.<the same 32 hex>``. The caller follows its inbox from the live end
   *before* it publishes the request, so no reply can slip past it.
2. The request is published to its topic as a JSON envelope::

       {"request": "<id>", "deadline": <ms>, "data": <payload>}

   ``data`` is the JSON payload itself; for any other content type it is the
   payload in base64 and the envelope carries ``"content_type"`` too.
3. A reply is published to the inbox with the request id as its idempotency
   key, so only the first reply is stored; a second one is a
   :class:`~hubbub.errors.Conflict`. A reply after the deadline is
   :class:`~hubbub.errors.Expired` and stores nothing, so a late reply reaches
   nobody.
4. The caller takes the first message of its inbox, or raises
   :class:`~hubbub.errors.GatewayTimeout` at the deadline. A reply to a
   well-formed, unexpired id whose caller is gone (or never was: the id cannot
   be told apart without shared state) is accepted and never read. Inboxes are
   the ``_inbox`` namespace, which keeps one message for a minute unless
   configured otherwise (:meth:`hubbub.config.Config.for_topic`).
"""

from __future__ import annotations

import base64
import re
import secrets
from typing import TYPE_CHECKING

import msgspec

from ..config import INBOX
from ..errors import Conflict, Expired, GatewayTimeout, InvalidRequest, Unavailable
from ..message import JSON, Message
from .subscription import State

if TYPE_CHECKING:
    from .hub import Hub

_ID_RE = re.compile(r"(0|[1-9][0-9]{0,15})\.([0-9a-f]{32})")
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


def parse_request_id(request_id: str, *, field: str = "to") -> tuple[int, str]:
    """The deadline (ms) and the inbox topic of a request id.

    Raises:
        InvalidRequest: not an id :meth:`Requests.request` makes.
    """
    m = _ID_RE.fullmatch(request_id) if isinstance(request_id, str) else None
    if m is None:
        raise InvalidRequest("not a request id (<deadline>.<32 hex digits>)", field=field)
    return int(m.group(1)), f"{INBOX}.{m.group(2)}"


def envelope(request_id: str, deadline: int, data: bytes, content_type: str) -> bytes:
    """The request as published to its topic (Rule 2); ``data`` JSON is compacted later."""
    head = b'{"request":' + _json_encode(request_id) + b',"deadline":' + str(deadline).encode()
    if content_type == JSON:
        return head + b',"data":' + data + b"}"
    return (head + b',"content_type":' + _json_encode(content_type)
            + b',"data":' + _json_encode(base64.b64encode(data).decode()) + b"}")


class Requests:
    """Request-reply over one hub. Reached as ``hub.requests``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    async def request(
        self, topic: str, data: bytes, content_type: str = JSON, *, timeout: float = 5.0
    ) -> Message:
        """Publish a request to ``topic``; the first reply to it (Rules 1, 2 and 4).

        Raises:
            InvalidRequest, InvalidTopic, PayloadTooLarge: bad input; nothing published.
            GatewayTimeout: no reply within ``timeout`` seconds.
            Unavailable: the store failed or the hub is draining.
        """
        hub = self.hub
        high = hub.config.server.max_wait
        if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                or not 0 < timeout <= high):
            raise InvalidRequest(
                f"timeout must be more than 0 and at most {high:g} seconds", field="timeout")
        if content_type == JSON:
            # Checked on its own: spliced into the envelope, text like
            # `1,"request":"x"` would otherwise forge the envelope's fields.
            try:
                data = _json_encode(_json_decode(data))
            except (msgspec.DecodeError, UnicodeDecodeError):
                raise InvalidRequest("malformed JSON", field="data") from None
        token = secrets.token_hex(16)
        deadline = hub.now() + int(timeout * 1000)
        request_id = f"{deadline}.{token}"
        sub = await hub.subscribe([f"{INBOX}.{token}"], "end", buffer=4)
        try:
            await hub.publish(topic, envelope(request_id, deadline, data, content_type))
            while (left := deadline - hub.now()) > 0:
                for event in await sub.next_batch(1, timeout=left / 1000):
                    if isinstance(event, Message):
                        return event
                if sub.state is State.CLOSED:
                    raise Unavailable("hub is shutting down")
        finally:
            sub.close()
        raise GatewayTimeout(f"no reply to the request on {topic} within {timeout:g} s",
                             field="timeout", request=request_id)

    async def reply(self, request_id: str, data: bytes, content_type: str = JSON) -> Message:
        """Store the reply to ``request_id`` for its caller (Rule 3); the stored message.

        Raises:
            InvalidRequest: malformed id (``field`` "to") or payload; nothing stored.
            Expired: the request's deadline has passed; nothing stored.
            Conflict: the request was already answered; nothing stored.
        """
        deadline, inbox = parse_request_id(request_id)
        if self.hub.now() >= deadline:
            raise Expired("the request's deadline has passed; the reply is dropped",
                          field="to", request=request_id)
        result = await self.hub.publish(inbox, data, content_type, request_id)
        if result.duplicate:
            raise Conflict("request already answered", field="to", request=request_id)
        return result.message
