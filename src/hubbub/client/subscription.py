"""A subscription: message dicts from the best door that works, resumed from
its cursor after every disconnect (:meth:`hubbub.client.AsyncClient.subscribe`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable, Sequence
from types import TracebackType
from typing import Any, Protocol

import httpx

from ..protocol import errors
from .backoff import Backoff, BackoffPolicy
from .base import NETWORK_ERRORS, Door, OnGap, Transport
from .errors import DoorRefused
from .streams import Event, read_poll, read_sse, read_ws


class DoorKeeper(Protocol):
    """What a :class:`Subscription` uses of its :class:`~hubbub.client.AsyncClient`:
    its connections, and its memory of which doors work."""

    @property
    def http(self) -> httpx.AsyncClient: ...

    @property
    def ws_url(self) -> str: ...

    @property
    def auth_headers(self) -> dict[str, str]: ...

    def _first_door(self) -> Transport: ...

    def _refuse(self, door: Transport) -> None: ...

    def _remember(self, door: Transport) -> None: ...


class Subscription:
    """An async iterator of message dicts that survives disconnects.

    Each item is a message object exactly as the hub sends it (``{topic,
    offset, cursor, time, id, data}``, plus ``content_type`` with base64
    ``data`` for non-JSON payloads). When history the hub no longer has lies
    ahead, iteration raises :class:`~hubbub.protocol.errors.GapError` (``extra``:
    ``topic``, ``from``, ``to``, ``reason``, ``cursor``); the subscription
    stays usable, and iterating it again continues after the gap. With
    ``on_gap="event"`` a gap is an item instead: ``{"gap": {topic, from, to,
    reason}}``.

    :attr:`cursor` is always where to resume after the last item handed out;
    save it to resume later with ``subscribe(..., after=cursor)``.
    :attr:`transport` is the door in use (with ``auto``, it changes when a
    door is refused).
    """

    def __init__(
        self,
        client: DoorKeeper,
        topics: Sequence[str],
        after: str,
        transport: Door,
        *,
        wait: float,
        interval: float,
        backoff: BackoffPolicy,
        on_gap: OnGap,
        on_reconnect: Callable[[BaseException | None], None] | None = None,
    ) -> None:
        self.topics = list(topics)
        self.auto = transport == "auto"
        self.transport: Transport = client._first_door() if transport == "auto" else transport
        self.cursor = after
        #: How many times the stream was reopened.
        self.reconnects = 0
        #: The last error that caused a reconnect or a fallback (for logging).
        self.last_error: BaseException | None = None
        self._client = client
        self._wait = wait
        self._interval = interval
        self._backoff = Backoff(backoff)
        self._on_gap = on_gap
        self._on_reconnect = on_reconnect
        self._items = self._run()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        item = await self._items.__anext__()
        if "gap" in item and self._on_gap == "raise":
            gap = item["gap"]
            raise errors.GapError(
                f"history lost on {gap.get('topic')}: offsets {gap.get('from')} to "
                f"{gap.get('to')} ({gap.get('reason', 'trimmed')})",
                field="after", cursor=self.cursor, **gap)
        return item

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
            return read_ws(self._client.ws_url, self.topics, cursor,
                           headers=self._client.auth_headers)
        if self.transport == "sse":
            return read_sse(http, self.topics, cursor)
        wait = self._wait if self.transport == "longpoll" else 0.0
        return read_poll(http, self.topics, cursor, wait=wait, interval=self._interval)

    def _fall_back(self, exc: DoorRefused) -> None:
        """Leave a refused door for the next one, or raise when there is none."""
        self._client._refuse(self.transport)
        if not self.auto:
            raise exc
        nxt = self._client._first_door()
        if nxt == self.transport:  # every door refused
            raise DoorRefused("every door to the hub is refused (ws, sse, longpoll, poll)",
                              transport="auto") from exc
        self.transport = nxt

    async def _run(self) -> AsyncGenerator[dict[str, Any], None]:
        while True:
            try:
                async with contextlib.aclosing(self._open()) as events:
                    async for ev in events:
                        self._backoff.reset()
                        self._client._remember(self.transport)
                        if ev.cursor:
                            self.cursor = ev.cursor
                        if ev.kind == "message":
                            yield ev.body
                        elif ev.kind == "gap":
                            yield {"gap": ev.body}
            except DoorRefused as exc:
                self.last_error = exc
                self._fall_back(exc)
                continue  # the next door at once: nothing is wrong with the hub
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
            if self._on_reconnect is not None:
                self._on_reconnect(self.last_error)
            await asyncio.sleep(self._backoff.next_delay())
