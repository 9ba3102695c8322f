"""The asyncio client: publish with retries, subscribe with resumption.

::

    async with AsyncClient("http://127.0.0.1:8080") as hub:
        receipt = await hub.publish("chat.room1", {"text": "hi"})
        async with hub.subscribe(["chat.room1"], after="start", transport="sse") as sub:
            async for item in sub:
                print(item["offset"], item["data"], sub.cursor)

Two promises carry the design:

* A publish is retried, on connection errors and on answers the hub marks
  ``temporary``, always with the *same* ``Idempotency-Key``, so a retry whose
  first attempt was in fact stored stores nothing twice.
* A subscription reconnects (with capped exponential backoff) from the last
  cursor it saw, on any door, so a dropped connection, a hub drain or a hub
  restart costs time, never messages, and never repeats one.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import weakref
from collections.abc import AsyncGenerator, Sequence
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec
from websockets.exceptions import WebSocketException

from .. import __version__, errors
from .errors import error_from_response
from .groups import Group
from .streams import Event, read_poll, read_sse, read_ws

Transport = Literal["ws", "sse", "longpoll", "poll"]
TRANSPORTS: tuple[Transport, ...] = ("ws", "sse", "longpoll", "poll")
JSON = "application/json"
OCTET = "application/octet-stream"

#: Failures of the network, not of the request: reconnecting can help.
NETWORK_ERRORS = (httpx.TransportError, OSError, TimeoutError, WebSocketException)
MIN_BACKOFF = 0.1


class Subscription:
    """An async iterator of message dicts (and gaps) that survives disconnects.

    Each item is either a message object exactly as the hub sends it
    (``{topic, offset, cursor, time, id, data}``, plus ``content_type`` with
    base64 ``data`` for non-JSON payloads) or a gap, ``{"gap": {topic, from,
    to, reason}}``: history the hub no longer has, said rather than hidden.

    :attr:`cursor` is always where to resume after the last item handed out;
    save it to resume later with ``subscribe(..., after=cursor)``.
    """

    def __init__(
        self,
        client: AsyncClient,
        topics: Sequence[str],
        after: str,
        transport: Transport,
        *,
        wait: float,
        interval: float,
        max_backoff: float,
    ) -> None:
        self.topics = list(topics)
        self.transport = transport
        self.cursor = after
        #: How many times the stream was reopened.
        self.reconnects = 0
        #: The last error that caused a reconnect (for logging).
        self.last_error: BaseException | None = None
        self._client = client
        self._wait = wait
        self._interval = interval
        self._max_backoff = max_backoff
        self._items = self._run()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self._items.__anext__()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def running(self) -> bool:
        """Whether a task is inside an iteration step right now."""
        return bool(getattr(self._items, "ag_running", False))

    async def aclose(self) -> None:
        """Close the connection; the iterator ends. Idempotent.

        Raises:
            UsageError: another task is iterating the subscription right now;
                cancel that task instead (its iteration then closes it).
        """
        if self.running:
            raise errors.UsageError(
                "the subscription is being iterated by another task; cancel that task")
        await self._items.aclose()

    def _open(self) -> AsyncGenerator[Event, None]:
        http, cursor = self._client.http, self.cursor
        if self.transport == "ws":
            return read_ws(self._client.ws_url, self.topics, cursor)
        if self.transport == "sse":
            return read_sse(http, self.topics, cursor)
        wait = self._wait if self.transport == "longpoll" else 0.0
        return read_poll(http, self.topics, cursor, wait=wait, interval=self._interval)

    async def _run(self) -> AsyncGenerator[dict[str, Any], None]:
        backoff = MIN_BACKOFF
        while True:
            try:
                async with contextlib.aclosing(self._open()) as events:
                    async for ev in events:
                        backoff = MIN_BACKOFF
                        if ev.cursor:
                            self.cursor = ev.cursor
                        if ev.kind == "message":
                            yield ev.body
                        elif ev.kind == "gap":
                            yield {"gap": ev.body}
            except errors.HubbubError as exc:
                if not exc.temporary:
                    raise
                # A slow consumer is cut off with the cursor to resume from.
                resume = exc.extra.get("cursor")
                if isinstance(resume, str):
                    self.cursor = resume
                self.last_error = exc
            except NETWORK_ERRORS as exc:
                self.last_error = exc
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)


class AsyncClient:
    """A connection to one hub.

    Args:
        base_url: the hub's HTTP address, e.g. ``http://127.0.0.1:8080``.
        timeout: seconds for one HTTP request (long polls and streams add
            their own wait).
        retry_for: how long :meth:`publish` keeps retrying before it gives up
            (``0``: one attempt).
        http_transport: an httpx transport for the HTTP doors (a proxy, a
            test's fault injector); WebSockets always connect directly.
    """

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8080",
        *,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        scheme, sep, rest = self.base_url.partition("://")
        if not sep or scheme not in ("http", "https"):
            raise errors.UsageError(f"base_url must start with http:// or https://: {base_url!r}")
        self.ws_url = ("wss" if scheme == "https" else "ws") + "://" + rest + "/v1/ws"
        self.retry_for = retry_for
        self.http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout,
            headers={"User-Agent": f"hubbub-python/{__version__}"}, transport=http_transport,
        )
        self._subs: weakref.WeakSet[Subscription] = weakref.WeakSet()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle subscriptions made by this client, then the HTTP connections.

        A subscription that a task is iterating right now is that task's to
        end (cancel it first).
        """
        for sub in list(self._subs):
            if not sub.running:
                await sub.aclose()
        await self.http.aclose()

    async def publish(
        self,
        topic: str,
        data: Any,
        *,
        key: str | None = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:
        """Publish one message; returns the hub's receipt once the message is stored.

        Args:
            data: bytes are sent as they are (``content_type``, default
                ``application/octet-stream``); anything else is encoded as JSON.
            key: the idempotency key; one is generated when not given. Every
                retry of this call sends the same key.
        Returns:
            ``{topic, offset, cursor, id, time}`` (plus ``"duplicate": true``
            when the hub had already stored this key).
        Raises:
            InvalidTopic, InvalidRequest, PayloadTooLarge, ...: the hub refused
                the message; nothing was stored, retrying will not help.
            Unavailable: the hub could not be reached or stayed unavailable for
                ``retry_for`` seconds; the message may or may not be stored,
                and publishing again with the same ``key`` is safe.
        """
        body, ctype = _payload(data, content_type)
        headers = {"Content-Type": ctype, "Idempotency-Key": key or secrets.token_hex(16)}
        url = "/v1/topics/" + quote(topic, safe=":@")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.retry_for
        delay = MIN_BACKOFF / 2
        while True:
            try:
                r = await self.http.post(url, content=body, headers=headers)
            except httpx.UnsupportedProtocol as exc:
                raise errors.UsageError(str(exc)) from None
            except httpx.TransportError as exc:
                failure: errors.HubbubError = errors.Unavailable(
                    f"cannot reach the hub at {self.base_url}: {exc or type(exc).__name__}"
                )
                failure.__cause__ = exc
            else:
                if r.status_code in (200, 201):
                    receipt: dict[str, Any] = msgspec.json.decode(r.content)
                    return receipt
                failure = await error_from_response(r)
                if not failure.temporary:
                    raise failure
            if loop.time() + delay > deadline:
                raise failure
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def subscribe(
        self,
        topics: str | Sequence[str],
        *,
        after: str | None = None,
        transport: Transport = "ws",
        wait: float = 25.0,
        interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> Subscription:
        """Follow topics (names or patterns) through one door, from ``after``.

        Args:
            after: a cursor, ``"start"`` (all retained history) or ``"end"``
                (only new messages; the default on every transport).
            transport: ``ws``, ``sse``, ``longpoll`` or ``poll``.
            wait: seconds a long poll is held by the hub.
            interval: seconds between idle short polls.
            max_backoff: longest pause between reconnection attempts.
        Returns:
            A :class:`Subscription`; iterate it, and close it (``async with``)
            when done. It connects on first iteration.
        Raises:
            UsageError: no topics, or an unknown transport.
        """
        names = [topics] if isinstance(topics, str) else list(topics)
        if not names:
            raise errors.UsageError("subscribe needs at least one topic")
        if transport not in TRANSPORTS:
            raise errors.UsageError(f"transport must be one of {', '.join(TRANSPORTS)}")
        sub = Subscription(self, names, after or "end", transport,
                           wait=wait, interval=interval, max_backoff=max_backoff)
        self._subs.add(sub)
        return sub


    def group(
        self,
        name: str,
        topics: str | Sequence[str] | None = None,
        *,
        start: Literal["start", "end"] = "end",
        lease: float = 30.0,
    ) -> Group:
        """A consumer group: many workers share its messages, each leased to one.

        Args:
            topics: the group's topics or patterns; needed to create it, and
                must match when it exists (``None``: whatever it has).
            start: where a new group begins: ``"end"`` (only messages stored
                from now on) or ``"start"`` (all retained history).
            lease: seconds each pulled message is leased for.
        Returns:
            A :class:`~hubbub.client.groups.Group`: ``pull()``, ``ack()``,
            ``nack()``, ``extend()``, ``info()``, or ``consume()`` to iterate.
        """
        names = [topics] if isinstance(topics, str) else topics
        return Group(self, name, names, start=start, lease=lease)


def _payload(data: Any, content_type: str | None) -> tuple[bytes, str]:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), content_type or OCTET
    if content_type not in (None, JSON):
        raise errors.UsageError("data must be bytes when content_type is not JSON")
    try:
        return msgspec.json.encode(data), JSON
    except (TypeError, msgspec.EncodeError) as exc:
        raise errors.UsageError(f"data cannot be encoded as JSON: {exc}") from None
