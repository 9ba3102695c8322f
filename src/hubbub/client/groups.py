"""Consumer groups from the client side: pull, ack, nack, extend (over HTTP).

::

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        mailer = hub.group("mailer", ["orders.*"], start="start")
        async for delivery in mailer.consume(max=10):
            send_mail(delivery.data)
            await delivery.ack()

Delivery is at-least-once: a message whose ack does not reach the hub before
its lease runs out is delivered again (``delivery.attempt`` says which try
this is). Acks follow nats.py's ``Msg``: :meth:`Delivery.ack`,
:meth:`Delivery.nack` (with a delay), :meth:`Delivery.extend`; settling a
delivery a second time raises :class:`~hubbub.protocol.errors.UsageError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec

from ..protocol import errors
from .base import NETWORK_ERRORS, ClientBase
from .errors import error_from_response

#: Keys of a pulled item that belong to its lease, not to the message.
LEASE_KEYS = ("lease", "attempt", "deadline")
MIN_BACKOFF = 0.1


class Delivery:
    """One message leased to us. Settle it exactly once: ack, nack, or let it run out.

    Attributes:
        message: the message object as every door shows it
            (``{topic, offset, cursor, time, id, data}``, ...).
        lease: the lease id; ``attempt``: which try this is (1 the first);
        deadline: when the lease runs out (ms since the Unix epoch).
    """

    def __init__(self, group: Group, item: dict[str, Any]) -> None:
        self.group = group
        self.lease: str = item["lease"]
        self.attempt: int = item["attempt"]
        self.deadline: int = item["deadline"]
        self.message = {k: v for k, v in item.items() if k not in LEASE_KEYS}
        self.settled = False

    def __repr__(self) -> str:
        m = self.message
        return f"<Delivery {m.get('topic')}#{m.get('offset')} attempt={self.attempt}>"

    @property
    def data(self) -> Any:
        return self.message.get("data")

    @property
    def topic(self) -> str:
        return str(self.message.get("topic"))

    def to_dict(self) -> dict[str, Any]:
        """The item as the hub sent it: the lease keys, then the message."""
        return {"lease": self.lease, "attempt": self.attempt, "deadline": self.deadline,
                **self.message}

    def _settling(self) -> None:
        if self.settled:
            raise errors.UsageError("this delivery was already acked or nacked")
        self.settled = True

    async def ack(self) -> None:
        """Done with it.

        Raises:
            Conflict: the lease ran out and the hub gave the message to
                another worker (or it was already settled): it may be
                processed twice; make processing idempotent.
            UsageError: already acked or nacked.
        """
        self._settling()
        await self.group.ack([self.lease])

    async def nack(self, *, delay: float = 0.0, error: str | None = None) -> None:
        """Give it back, for another try after ``delay`` seconds; ``error`` is kept
        for the dead-letter topic."""
        self._settling()
        await self.group.nack([self.lease], delay=delay, error=error)

    async def extend(self, lease: float = 30.0) -> None:
        """Keep it ``lease`` more seconds from now (for long work); it stays unsettled."""
        if self.settled:
            raise errors.UsageError("this delivery was already acked or nacked")
        await self.group.extend([self.lease], lease=lease)


class Group:
    """A consumer group of a hub. Made by :meth:`AsyncClient.group`."""

    def __init__(
        self,
        client: ClientBase,
        name: str,
        topics: Sequence[str] | None,
        *,
        start: Literal["start", "end"] = "end",
        lease: float = 30.0,
    ) -> None:
        self.name = name
        self.topics = list(topics or ())
        self.start = start
        self.lease = lease
        self._client = client
        self._path = "/v1/groups/" + quote(name, safe=":@")

    async def _post(self, path: str, *, timeout: float | None = None, **kw: Any) -> Any:
        http = self._client.http
        t = http.timeout if timeout is None else httpx.Timeout(10.0, read=timeout + 10.0)
        r = await http.post(self._path + path, timeout=t, **kw)
        if r.status_code != 200:
            raise await error_from_response(r)
        return msgspec.json.decode(r.content)

    async def info(self) -> dict[str, Any]:
        """``{group, topics, pending, cursor, max_deliver, dead_letter_topic, created}``.

        Raises:
            NotFound: no such group.
        """
        r = await self._client.http.get(self._path)
        if r.status_code != 200:
            raise await error_from_response(r)
        info: dict[str, Any] = msgspec.json.decode(r.content)
        return info

    async def pull(self, max: int = 1, *, wait: float = 0.0) -> list[Delivery]:
        """Lease up to ``max`` messages, waiting up to ``wait`` seconds for the first.

        The first pull creates the group (over ``topics``, from ``start``).

        Raises:
            Conflict: the group exists for other topics.
            NotFound: no such group, and no topics to create it.
        """
        params: list[tuple[str, str]] = [("topic", t) for t in self.topics]
        params += [("max", str(max)), ("lease", f"{self.lease:g}"), ("start", self.start)]
        if wait:
            params.append(("wait", f"{wait:g}"))
        page = await self._post("/pull", params=params, timeout=wait)
        return [Delivery(self, item) for item in page["messages"]]

    async def _settle(self, action: str, ids: Sequence[str], **body: Any) -> dict[str, str]:
        doc = await self._post("/" + action, json={"ids": list(ids), **body})
        results: dict[str, str] = doc["results"]
        return results

    async def ack(self, ids: Sequence[str]) -> dict[str, str]:
        """Ack lease ids; returns each one's outcome (``ok``, ``expired``, ``unknown``).

        Raises:
            Conflict: none was ``ok``; nothing changed (``exc.extra["results"]``).
        """
        return await self._settle("ack", ids)

    async def nack(
        self, ids: Sequence[str], *, delay: float = 0.0, error: str | None = None
    ) -> dict[str, str]:
        """Give leases back, due again after ``delay`` seconds (outcomes as :meth:`ack`)."""
        body: dict[str, Any] = {"delay": delay}
        if error is not None:
            body["error"] = error
        return await self._settle("nack", ids, **body)

    async def extend(self, ids: Sequence[str], *, lease: float = 30.0) -> dict[str, str]:
        """Make leases last ``lease`` seconds from now (outcomes as :meth:`ack`)."""
        return await self._settle("extend", ids, lease=lease)

    def consume(
        self, max: int = 10, *, wait: float = 25.0, max_backoff: float = 5.0
    ) -> Consumer:
        """Deliveries forever: long polls of up to ``max``, retried on network errors.

        ::

            async for delivery in group.consume():
                ...
                await delivery.ack()

        Settle each delivery (ack or nack). Deliveries pulled but not yet
        handed out when the iteration ends (a ``break``, an exception, the
        task cancelled) are nacked, so that other workers get them at once;
        ``async with group.consume() as deliveries:`` does it before the
        block is left, a plain ``async for`` as soon as the loop is left
        (and :meth:`AsyncClient.aclose` waits for it).

        Raises:
            HubbubError: the hub refused the pull (bad topics, a group for
                other topics...), except temporary errors, which are retried.
        """
        return Consumer(self, max, wait, max_backoff)


class Consumer:
    """The deliveries of :meth:`Group.consume`: an async iterator, and an async
    context manager that closes it.

    What it pulled but has not handed out yet goes back to the hub (a nack)
    when it is closed, or, when it is dropped unclosed (the ``break`` of a
    plain ``async for``), from a task of its client's that
    :meth:`AsyncClient.aclose` waits for: the rest of a batch never waits for
    its lease to run out, and no error is left for the event loop to report.
    """

    def __init__(self, group: Group, max: int, wait: float, max_backoff: float) -> None:
        self.group = group
        self.max = max
        self.wait = wait
        self.max_backoff = max_backoff
        self._batch: list[Delivery] = []
        self._closed = False
        #: The loop it is iterated on (known from the first step: the blocking
        #: client makes it on another thread).
        self._loop: asyncio.AbstractEventLoop | None = None

    def __aiter__(self) -> Consumer:
        return self

    async def __anext__(self) -> Delivery:
        self._loop = asyncio.get_running_loop()
        backoff = MIN_BACKOFF
        while not self._batch:
            if self._closed:
                raise StopAsyncIteration
            try:
                self._batch = await self.group.pull(self.max, wait=self.wait)
            except errors.HubbubError as exc:
                if (isinstance(exc, errors.InvalidRequest) and exc.field == "wait"
                        and self.wait > 1):
                    self.wait = int(self.wait / 2)  # this hub's max_wait is lower
                    continue
                if not exc.temporary:
                    raise
            except NETWORK_ERRORS:
                pass
            else:
                continue
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff)
        return self._batch.pop(0)

    async def aclose(self) -> None:
        """End the iteration; give back what was pulled and not handed out. Idempotent."""
        self._closed = True
        batch, self._batch = self._batch, []
        if batch:
            await self.group._client.nack_quietly(self.group, [d.lease for d in batch])

    async def __aenter__(self) -> Consumer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Dropped unclosed, as a plain ``async for`` that breaks leaves it.
        if self._batch and self._loop is not None and not self._loop.is_closed():
            leases = [d.lease for d in self._batch]
            self._batch = []
            nack_later = self.group._client.nack_later
            try:
                here = asyncio.get_running_loop() is self._loop
            except RuntimeError:
                here = False
            if here:  # at once, so that a client closing next waits for it
                nack_later(self.group, leases)
            else:
                self._loop.call_soon_threadsafe(nack_later, self.group, leases)
