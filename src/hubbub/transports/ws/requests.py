"""Request-reply over a WebSocket (:mod:`hubbub.core.requests`): a connection's
``req`` ops that wait for their reply, and its ``reply`` ops.

A ``req`` is published in op order, like a ``pub`` (or refused at once with
``err`` ``no-responders``), but its answer (the reply, or ``err``
``responder-error`` or ``timeout``) comes when the reply does, from a task of
its own, so the connection's other ops go on meanwhile; only an ``err`` for a
request that could not be published is answered in its place. A ``reply``
is answered like a ``pub``. When the connection ends, its waiting requests
are given up (:meth:`Requests.close`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from typing import Any, Protocol

from ...core import Hub
from ...core.auth import Action, Principal
from ...core.requests import DEFAULT_TIMEOUT, PendingRequest
from ...protocol import wire
from ...protocol.errors import HubbubError, InvalidRequest
from ...protocol.message import ERROR_TYPE, Message
from ..auth import within_lifetime
from ..problems import ws_error
from .pipeline import Pipeline

log = logging.getLogger("hubbub")

#: Requests (``req``) one connection may have waiting at once.
MAX_REQUESTS = 100


def stored(op_id: int | str | None, m: Message) -> dict[str, Any]:
    """The ``ok`` of an op that stored ``m`` (a ``pub`` or a ``reply``)."""
    return {
        "op": "ok", "id": op_id, "topic": m.topic, "offset": m.offset,
        "cursor": m.cursor, "time": m.time, "msg_id": m.id,
    }


class Connection(Protocol):
    """What request-reply needs of its WebSocket connection
    (:class:`hubbub.transports.ws.connection.Connection`)."""

    hub: Hub
    principal: Principal | None

    @property
    def pipeline(self) -> Pipeline: ...

    async def answered(self, op_id: int | str | None, work: Awaitable[Any]) -> Any: ...

    def check(self, action: Action, topic: str, field: str, *, concrete: bool = False) -> None: ...

    def payload(self, op: wire.Pub | wire.Req | wire.Reply) -> tuple[bytes, str]: ...

    async def send_obj(self, obj: Any) -> None: ...

    def close(self, code: int, reason: str, *, resume: bool = False) -> None: ...


class Requests:
    """The request-reply ops of one connection; made on its first ``req`` or ``reply``."""

    __slots__ = ("conn", "_loop", "waiting")

    def __init__(self, conn: Connection, loop: asyncio.AbstractEventLoop) -> None:
        self.conn = conn
        self._loop = loop
        #: Tasks waiting for the replies of the connection's ``req`` ops.
        self.waiting: set[asyncio.Task[None]] = set()

    def ask(self, op: wire.Req) -> None:
        """Start a request: its task publishes it, in op order, then waits for
        its reply; the pipeline answers in its place only if it could not be
        published."""
        pipeline = self.conn.pipeline
        if len(self.waiting) >= MAX_REQUESTS:
            pipeline.answer(ws_error(InvalidRequest(
                f"at most {MAX_REQUESTS} requests may wait per connection", field="op"), op.id))
            return
        sent: asyncio.Future[dict[str, Any] | None] = self._loop.create_future()
        before, lane = pipeline.hold_lane()
        task = asyncio.create_task(self._request(op, before, lane, sent),
                                   name=f"hubbub-ws-req-{op.id}")
        self.waiting.add(task)
        task.add_done_callback(self.waiting.discard)
        pipeline.wait_for(sent)

    async def _request(
        self, op: wire.Req, before: asyncio.Future[None] | None, lane: asyncio.Future[None],
        sent: asyncio.Future[dict[str, Any] | None],
    ) -> None:
        """Publish a request once ``before`` is handed off, say so through
        ``sent`` (``None``, or the ``err``), then wait for its reply and send
        it as the ``req``'s answer."""
        try:
            pending = await self.conn.answered(op.id, self._send_request(op, before, lane))
        except BaseException:
            sent.cancel()  # cancelled: the connection is gone
            raise
        finally:
            Pipeline.hand_off(lane)
        if not isinstance(pending, PendingRequest):
            sent.set_result(pending)  # its err (or None: the connection is closing)
            return
        sent.set_result(None)
        try:
            try:
                m = await pending.wait()
            except HubbubError as exc:  # GatewayTimeout, ResponderError, or Unavailable
                await self.conn.send_obj(ws_error(exc, op.id))
                return
            await self.conn.send_obj(
                {"op": "ok", "id": op.id, "request": pending.id, "reply": m.to_dict()})
        except OSError:
            pass  # the client is gone
        except Exception:
            log.exception("websocket request failed (op id %r)", op.id)
            self.conn.close(1011, "internal error")

    async def _send_request(
        self, op: wire.Req, before: asyncio.Future[None] | None, lane: asyncio.Future[None],
    ) -> Any:
        """Check and publish a request after ``before``; its :class:`PendingRequest`."""
        if before is not None:
            await before  # first: this op's lane is free only after the one before
        self.conn.check(Action.PUBLISH, op.topic, "topic", concrete=True)
        data, content_type = self.conn.payload(op)
        timeout = op.timeout
        if timeout is None:
            timeout = min(DEFAULT_TIMEOUT, self.conn.hub.config.server.max_wait)
        timeout = within_lifetime(self.conn.hub, self.conn.principal, timeout)  # as on HTTP
        return await self.conn.hub.requests.send(
            op.topic, data, content_type, timeout=timeout,
            handing_off=functools.partial(Pipeline.hand_off, lane))

    async def reply(
        self, op: wire.Reply, before: asyncio.Future[None] | None, lane: asyncio.Future[None],
    ) -> dict[str, Any]:
        """Store a reply after ``before``, handing ``lane`` on; its ``ok``."""
        try:
            if before is not None:
                await before  # first: this op's lane is free only after the one before
            if op.error is not None:  # wire.Reply made sure there is no data then
                data, content_type = op.error.encode(), ERROR_TYPE
            else:
                data, content_type = self.conn.payload(op)
            m = await self.conn.hub.requests.reply(
                op.to, data, content_type, handing_off=functools.partial(Pipeline.hand_off, lane))
        finally:
            Pipeline.hand_off(lane)
        return stored(op.id, m)

    async def close(self) -> None:
        """Give up every waiting request (the connection is gone): replies to
        them are refused from then on."""
        tasks = list(self.waiting)
        for task in tasks:
            task.cancel()  # each gives its request up as it unwinds
        await asyncio.gather(*tasks, return_exceptions=True)
