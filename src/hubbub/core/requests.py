"""Request-reply over topics: a caller waits for one responder's reply.

Nothing is kept in a node's memory between a request and its reply, so any
node of a cluster (on any engine) can take the reply and the caller's node
still gets it: what is needed travels in the request id, the topics and one
engine record::

    reply = await hub.requests.request("svc.echo", b'{"n":1}', timeout=5)

    # a worker, taking requests through a consumer group:
    for lease in await hub.groups.pull("echoers", ["svc.echo"], wait=30):
        env = lease.message.value()
        await hub.requests.reply(env["request"], b'{"echo":1}')
        await hub.groups.ack("echoers", [lease.lease_id])

Invariants
----------
"the inbox is followed first": A request id is ``<deadline ms>.<32 hex>``; the caller's inbox is the topic
    ``_inbox.<the same 32 hex>``. The caller follows its inbox from the live end
    *before* it publishes the request, so no reply can slip past it.
"requests travel in envelopes": The request is published to its topic as a JSON envelope::

        {"request": "<id>", "deadline": <ms>, "data": <payload>}

    ``data`` is the JSON payload itself; for any other content type it is the
    payload in base64 and the envelope carries ``"content_type"`` too.
"a waited request has a record": While the caller waits, the engine holds the record ``request/<request id>``,
    which expires at the deadline. It is written before the request is
    published, and removed when the caller gives up early (its client left).
    Records are shared by the nodes of a cluster, so every node can tell a
    request that someone waits for from one that nobody does.
"the first reply wins": A reply is checked, then published to the inbox with the request id as its
    idempotency key, so only the first reply is stored. Refused, storing
    nothing (so a late reply reaches nobody):

    * after the deadline: :class:`~hubbub.protocol.errors.Expired`;
    * with no record (never made, or its caller gone): :class:`~hubbub.protocol.errors.NotFound`;
    * a second reply: :class:`~hubbub.protocol.errors.Conflict`.

"the caller takes the first reply": The caller takes the first message of its inbox, or raises
    :class:`~hubbub.protocol.errors.GatewayTimeout` at the deadline. Inboxes are the
    ``_inbox`` namespace, which keeps one message for a minute unless
    configured otherwise (:meth:`hubbub.config.Config.for_topic`).
"no responders fail fast": Fail fast, as NATS answers "no responders" at once: a request whose topic
    no consumer group's worker takes (:meth:`hubbub.core.groups.Groups.has_workers`,
    known cluster-wide through engine records) raises
    :class:`~hubbub.protocol.errors.NoResponders` and publishes nothing. A
    responder whose handler failed replies with an *error reply*: the content
    type :data:`ERROR_TYPE` and its message as UTF-8 text. The caller raises
    :class:`~hubbub.protocol.errors.ResponderError` with that message instead
    of waiting for the deadline.

A request is made in two steps: :meth:`Requests.send` publishes it (bad input
raises there) and :meth:`PendingRequest.wait` waits for the reply, so a door
can carry on with a client's other ops while its request waits (the WebSocket
door does). :meth:`Requests.request` does both.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import re
import secrets
from collections.abc import Callable

import msgspec

from ..config import INBOX
from ..protocol.errors import (
    Conflict,
    Expired,
    GatewayTimeout,
    HubbubError,
    InvalidRequest,
    NoResponders,
    NotFound,
    PayloadTooLarge,
    ResponderError,
    Unavailable,
)
from ..protocol.message import ERROR_TYPE, JSON, Message, compact_json
from ..protocol.topics import validate_topic
from .ports import Publisher
from .subscription import State, Subscription
from .tracing import traced

#: The kind of the records of requests being waited for (invariant "a waited request has a record").
KIND = "request/"
DEFAULT_TIMEOUT = 5.0
#: The longest error message a responder may send, in characters.
MAX_ERROR = 1000
_ID_RE = re.compile(r"(0|[1-9][0-9]{0,15})\.([0-9a-f]{32})")
_json_encode = msgspec.json.Encoder().encode


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
    """The request as published to its topic (invariant "requests travel in envelopes"); ``data`` JSON is compacted later."""
    head = b'{"request":' + _json_encode(request_id) + b',"deadline":' + str(deadline).encode()
    if content_type == JSON:
        return head + b',"data":' + data + b"}"
    return (head + b',"content_type":' + _json_encode(content_type)
            + b',"data":' + _json_encode(base64.b64encode(data).decode()) + b"}")


def check_error(data: bytes) -> None:
    """Check the data of an error reply (invariant "no responders fail fast").

    Raises:
        InvalidRequest: not UTF-8 text of 1 to :data:`MAX_ERROR` characters.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("an error reply must be UTF-8 text", field="error") from None
    if not 0 < len(text) <= MAX_ERROR:
        raise InvalidRequest(f"an error reply must be 1 to {MAX_ERROR} characters",
                             field="error")


class PendingRequest:
    """A published request whose caller waits for the reply (from :meth:`Requests.send`).

    Call :meth:`wait` once, or :meth:`close` when the reply is no longer wanted.
    """

    def __init__(self, hub: Publisher, request_id: str, topic: str, timeout: float,
                 sub: Subscription) -> None:
        self.hub = hub
        #: The request id, as the envelope carries it.
        self.id = request_id
        self.topic = topic
        self.timeout = timeout
        #: Milliseconds since the Unix epoch.
        self.deadline, _ = parse_request_id(request_id)
        self._record = KIND + request_id
        self._sub = sub
        self._done = False

    @traced("hubbub request.wait")
    async def wait(self) -> Message:
        """The reply (the first message of the inbox); closes the request.

        Raises:
            ResponderError: the responder failed; its message is the error's.
            GatewayTimeout: no reply before the deadline (``request`` names it).
            Unavailable: the hub is shutting down.
        """
        hub = self.hub
        try:
            while (left := self.deadline - hub.now()) > 0:
                for event in await self._sub.next_batch(1, timeout=left / 1000):
                    if isinstance(event, Message):
                        self._done = True  # the record stays: a second reply is a Conflict
                        if event.content_type == ERROR_TYPE:
                            raise ResponderError(
                                event.data.decode("utf-8", "replace") or "responder failed",
                                request=self.id)
                        return event
                if self._sub.state is State.CLOSED:
                    raise Unavailable("hub is shutting down")
        finally:
            await self.close()
        raise GatewayTimeout(f"no reply to the request on {self.topic} within {self.timeout:g} s",
                             field="timeout", request=self.id)

    async def close(self) -> None:
        """Stop waiting; idempotent. Unanswered and before its deadline, the
        request's record is removed (invariant "a waited request has a record"), so later replies are refused."""
        self._sub.close()
        if self._done:
            return
        self._done = True
        hub = self.hub
        # A draining hub leaves the record to expire: its store may close any moment.
        if hub.now() < self.deadline and not hub.draining:
            # Shielded: a caller cancelled because its client left still tidies up.
            with contextlib.suppress(HubbubError, asyncio.CancelledError):
                await asyncio.shield(hub.engine.delete(self._record, hub.now()))


class Requests:
    """Request-reply over one hub. Reached as ``hub.requests``."""

    def __init__(self, hub: Publisher) -> None:
        self.hub = hub

    @traced("hubbub request", "CLIENT",
            attributes=lambda topic, *_, **__: {"messaging.destination.name": topic})
    async def send(
        self, topic: str, data: bytes, content_type: str = JSON, *,
        timeout: float = DEFAULT_TIMEOUT, handing_off: Callable[[], None] | None = None,
    ) -> PendingRequest:
        """Publish a request to ``topic`` (invariants "the inbox is followed first", "requests travel in envelopes" and "a waited request has a record"); wait for its reply with
        :meth:`PendingRequest.wait`.

        ``handing_off`` is called right before the request is handed to the
        store, when nothing is left to wait for before its append: a caller
        that publishes in order (a WebSocket connection's pipeline) lets its
        next publish go from there.

        Raises:
            InvalidRequest, InvalidTopic, PayloadTooLarge: bad input; nothing published.
            NoResponders: no group's worker takes ``topic`` (invariant "no responders fail fast"); nothing published.
            Unavailable: the store failed or the hub is draining; nothing published.
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
            data = compact_json(data, max_depth=hub.config.limits.json_depth)
        validate_topic(topic)
        limit = hub.config.for_topic(topic).max_message_size
        if len(data) > limit:  # checked before invariant "no responders fail fast": bad input is told as such
            raise PayloadTooLarge(f"message is larger than {limit} bytes", field="data")
        if not await hub.groups.has_workers(topic):
            raise NoResponders(f"no responders: no consumer group's worker takes {topic}",
                               field="topic")
        token = secrets.token_hex(16)
        # hub.now() drops the fraction of its millisecond: one more keeps the
        # wait from ending before ``timeout`` has passed.
        deadline = hub.now() + math.ceil(timeout * 1000) + 1
        request_id = f"{deadline}.{token}"
        sub = await hub.subscribe([f"{INBOX}.{token}"], "end", buffer=4)
        pending = PendingRequest(hub, request_id, topic, timeout, sub)
        try:
            await hub.engine.put(KIND + request_id, topic.encode(), hub.now(), expires=deadline,
                                 if_version=0)
            if handing_off is not None:
                handing_off()
            await hub.publish(topic, envelope(request_id, deadline, data, content_type),
                              limit_topics=True)
        except BaseException:
            await pending.close()
            raise
        return pending

    async def request(
        self, topic: str, data: bytes, content_type: str = JSON, *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Message:
        """Publish a request to ``topic``; the first reply to it (invariants "the inbox is followed first", "requests travel in envelopes" and "a waited request has a record" and 5).

        Raises:
            InvalidRequest, InvalidTopic, PayloadTooLarge: bad input; nothing published.
            NoResponders: no group's worker takes ``topic``; nothing published.
            ResponderError: the responder failed and said why.
            GatewayTimeout: no reply within ``timeout`` seconds.
            Unavailable: the store failed or the hub is draining.
        """
        pending = await self.send(topic, data, content_type, timeout=timeout)
        return await pending.wait()

    @traced("hubbub reply", attributes=lambda request_id, *_, **__: {
        "hubbub.request_id": request_id})
    async def reply(
        self, request_id: str, data: bytes, content_type: str = JSON, *,
        handing_off: Callable[[], None] | None = None,
    ) -> Message:
        """Store the reply to ``request_id`` for its caller (invariant "the first reply wins"); the stored message.

        ``handing_off`` is called as in :meth:`send`. A reply of content type
        :data:`ERROR_TYPE` is an error reply (invariant "no responders fail fast"): its data must be UTF-8
        text of 1 to :data:`MAX_ERROR` characters.

        Raises:
            InvalidRequest: malformed id (``field`` "to") or payload; nothing stored.
            Expired: the request's deadline has passed; nothing stored.
            NotFound: no caller waits for this request; nothing stored.
            Conflict: the request was already answered; nothing stored.
        """
        deadline, inbox = parse_request_id(request_id)
        if content_type == ERROR_TYPE:
            check_error(data)
        hub = self.hub
        if hub.now() >= deadline:
            raise Expired("the request's deadline has passed; the reply is dropped",
                          field="to", request=request_id)
        if await hub.engine.get(KIND + request_id, hub.now()) is None:
            raise NotFound("no such request: it was never made, or its caller has gone",
                           field="to", request=request_id)
        if handing_off is not None:
            handing_off()
        result = await hub.publish(inbox, data, content_type, request_id)
        if result.duplicate:
            raise Conflict("request already answered", field="to", request=request_id)
        return result.message

    async def sweep(self) -> int:
        """Remove the records of requests past their deadline; how many were removed."""
        removed = 0
        while gone := await self.hub.engine.expire(KIND, self.hub.now()):
            removed += len(gone)
            if len(gone) < 1000:
                break
        return removed
