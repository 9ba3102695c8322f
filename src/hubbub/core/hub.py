"""The hub core: publish to topic logs, read them from a cursor, follow them live.

Plain asyncio, no HTTP: every transport calls these methods, so every door
shares the same rules for topics, cursors, limits and gaps. A test can drive a
:class:`Hub` with no server at all::

    hub = Hub(MemoryEngine())
    await hub.start()
    await hub.publish("chat.room1", b'{"text":"hi"}')
    page = await hub.poll(["chat.room1"], after="start")
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from ..config import Config
from ..engines import open_engine
from ..engines.base import Engine
from ..loop.tasks import cancel_and_wait
from ..protocol.errors import GapError, HubbubError, Unavailable
from ..protocol.message import Message, compact_json
from ..protocol.topicindex import TopicIndex
from ..protocol.topics import TopicFilter
from . import tracing
from .auth import Auth
from .catalog import Catalog
from .connections import Connections
from .fanout import FanOut
from .groups import Groups
from .jobs import Jobs
from .metrics import Metrics
from .nodes import Nodes
from .polls import Polls
from .presence import Presence
from .publishing import Publishing
from .reading import MAX_TOPICS_PER_SUBSCRIPTION, Reading
from .requests import Requests
from .subscription import Event, Gap, Position, State, Subscription
from .tally import Tally
from .uploads import Uploads
from .values import Page, PublishItem, encode_value, scoped_key

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

TRIM_INTERVAL = 30.0


class Hub(Publishing, Reading, Catalog):
    """Topics, cursors, fan-out and subscriptions over one :class:`Engine`.

    Publishing (:mod:`hubbub.core.publishing`), reading the log
    (:mod:`hubbub.core.reading`) and topic metadata (:mod:`hubbub.core.catalog`)
    are in their own modules."""

    def __init__(
        self,
        engine: Engine,
        config: Config | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.config = config or Config()
        self.fanout = FanOut()
        self.draining = False
        #: Set when the hub starts draining; doors holding connections open watch it.
        self.closing = asyncio.Event()
        self._clock = clock
        #: This node's counters, read by /metrics and /v1/stats (core.metrics).
        self.metrics = Metrics(clock)
        self._subs: set[Subscription] = set()
        #: OpenTelemetry's tracer once the hub started, if tracing was asked
        #: for (:mod:`hubbub.core.tracing`); ``None``: nothing is traced.
        self.tracer: Tracer | None = None
        self._trimmer: asyncio.Task[None] | None = None
        self._started = False
        #: What every Subscription calls back, bound once rather than per
        #: subscription (an idle connection should cost little).
        self._sub_calls = (self._read_counted, self._release, self._is_ephemeral)
        self.groups = Groups(
            engine, self.config,
            lambda patterns, after: self.subscribe(patterns, after, buffer=64),
            self.now,
            metrics=self.metrics,
        )
        self.requests = Requests(self)
        self.uploads = Uploads(self, self.config.uploads)
        self.jobs = Jobs(self)
        self.presence = Presence(self)
        #: This node's place in the cluster view (:mod:`hubbub.core.nodes`).
        self.nodes = Nodes(self)
        #: Every WebSocket and SSE connection of the cluster (:mod:`hubbub.core.connections`).
        self.connections = Connections(self)
        #: Long polls waiting together (see :meth:`poll_now`).
        self.polls = Polls()
        #: Who a client is and what it may do; every door asks (:mod:`hubbub.core.auth`).
        self.auth = Auth(self.config)
        #: Every topic's name (:mod:`hubbub.protocol.topicindex`), and the newest seq
        #: whose topic it holds: patterns resolve through it, limits count by it.
        self.topics = TopicIndex()
        self._indexed_seq = 0
        #: Connections and subscriptions per principal (:mod:`hubbub.core.tally`).
        self.tally = Tally(self.config.limits, self.auth.enabled)

    @classmethod
    def open(cls, store: str, config: Config | None = None) -> Hub:
        """A hub on the store a URL names (``memory://``, ``sqlite:///PATH``,
        ``redis://...``): the engine is made here, opened by :meth:`start`.

        Raises:
            ValueError: the URL names no known engine (:func:`hubbub.engines.open_engine`).
        """
        return cls(open_engine(store), config)

    def now(self) -> int:
        """Milliseconds since the Unix epoch."""
        return int(self._clock() * 1000)

    @property
    def store_epoch(self) -> str:
        """The store's epoch: the first part of every store-wide cursor."""
        return self.engine.store_epoch

    async def ping(self) -> None:
        """Return once the store answers (readiness).

        Raises:
            Unavailable: it does not.
        """
        try:
            await self.engine.ping()
        except HubbubError:
            raise
        except Exception:
            raise Unavailable("store is not reachable") from None

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        """Open the engine and start background trimming. Idempotent."""
        if self._started:
            return
        await self.engine.open()
        self.tracer = tracing.tracer()
        self.engine.add_listener(self.fanout.publish)
        # Listen first, then list: a topic made in between is in one or the other.
        self.engine.add_listener(self._index)
        for info in await self.engine.topics():
            self.topics.add(info.name)
            self._indexed_seq = max(self._indexed_seq, info.last_seq)
        # An engine whose live feed can break (redis: its pub/sub link) says so.
        self.engine.add_error_listener(self.fail_subscriptions)
        self._trimmer = asyncio.create_task(self._trim_forever(), name="hubbub-trim")
        await self.uploads.start()
        self.presence.start()
        await self.jobs.start()
        self.nodes.start()
        self.connections.start()
        self._started = True

    def _index(self, messages: Sequence[Message]) -> None:
        """Engine listener: index the topics of newly stored messages."""
        topics = self.topics
        for m in messages:
            if m.topic not in topics:
                topics.add(m.topic)
        if messages:
            self._indexed_seq = max(self._indexed_seq, messages[-1].seq)

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def drain(self) -> None:
        """Refuse new work and end every subscription (their readers get ``[]``)."""
        self.draining = True
        self.closing.set()
        for sub in list(self._subs):
            sub.close()

    async def stop(self) -> None:
        """Drain, then close the engine after its in-flight appends."""
        await self.drain()
        await cancel_and_wait(self._trimmer)
        if self._started:
            await self.connections.stop()
            await self.nodes.stop()
            await self.uploads.stop()
            await self.presence.stop()  # its leaves are published before the engine closes
            await self.jobs.stop()
            await self.engine.close()
            self._started = False

    async def _trim_forever(self) -> None:
        while True:
            await asyncio.sleep(TRIM_INTERVAL)
            with contextlib.suppress(Unavailable):
                await self.engine.trim(self.config.retention, self.now())
                await self.requests.sweep()
                await self.groups.sweep()

    async def subscribe(
        self,
        patterns: Sequence[str],
        after: str | None = None,
        *,
        default: Literal["start", "end"] = "end",
        buffer: int | None = None,
    ) -> Subscription:
        """Follow topics from ``after`` (default: the current end). Close it when done.

        Raises:
            InvalidTopic, InvalidCursor: bad input.
            Unavailable: the hub is draining.
        """
        self._check_open()
        filt = self.topic_filter(patterns)
        read, release, is_ephemeral = self._sub_calls
        sub = Subscription(
            read, release, filt, Position(self.engine.store_epoch, 0),
            buffer=buffer or self.config.server.buffer, is_ephemeral=is_ephemeral,
        )
        # Register before the first read (:mod:`hubbub.core.subscription`,
        # invariant "live only after a short page").
        self.fanout.add(sub)
        self._subs.add(sub)
        try:
            sub.position, gaps = await self.resolve(filt, after, default)
        except BaseException:
            self.unsubscribe(sub)
            raise
        sub.add_gaps(gaps)
        return sub

    async def _read_counted(
        self, filt: TopicFilter, pos: Position, limit: int
    ) -> tuple[list[Message], list[tuple[str, int, int, int]]]:
        """:meth:`read_position`, counting store failures."""
        try:
            return await self.read_position(filt, pos, limit)
        except Unavailable:
            self.metrics.store_errors["read"] += 1
            raise

    def fail_subscriptions(self, exc: HubbubError) -> None:
        """End every live subscription with (a copy of) ``exc``, as
        :meth:`Subscription.fail` does: their clients resume from their cursors."""
        self.metrics.store_errors["feed"] += 1
        for sub in list(self._subs):
            sub.fail(type(exc)(exc.message))

    def end_subscriptions(self, topic: str, exc: HubbubError) -> int:
        """End the live subscriptions of this node naming ``topic`` exactly with (a
        copy of) ``exc``, as :meth:`Subscription.fail` does; how many."""
        ended = [sub for sub in list(self._subs) if topic in sub.topics.exact]
        for sub in ended:
            sub.fail(type(exc)(exc.message))
        return len(ended)

    def reset_topic(self, topic: str) -> int:
        """The log of ``topic`` was deleted (on any node): forget its name in this
        node's topic index, so it counts toward no limit, and end the live
        subscriptions naming it; how many were ended."""
        self.topics.discard(topic)
        return self.end_subscriptions(topic, Unavailable(
            "the topic's log was deleted; resume from the cursor to learn the gap"))

    def unsubscribe(self, sub: Subscription) -> None:
        """Close ``sub``; same as ``sub.close()``."""
        sub.close()

    def _is_ephemeral(self, topic: str) -> bool:
        return self.config.for_topic(topic).ephemeral

    def _release(self, sub: Subscription) -> None:
        """Stop feeding ``sub`` and forget it (it closed, or was cut off)."""
        self.fanout.remove(sub)
        self._subs.discard(sub)

    async def poll(
        self,
        patterns: Sequence[str],
        after: str | None = None,
        *,
        limit: int = 100,
        wait: float = 0.0,
        raise_gap: bool = False,
    ) -> Page:
        """Read up to ``limit`` messages after ``after`` (default: the start).

        With ``wait`` > 0 and nothing to read, wait up to ``wait`` seconds for
        the first message (a long poll); it answers as soon as one is stored.

        Raises:
            GapError: ``raise_gap`` is set and history was lost past the cursor;
                ``extra["cursor"]`` continues after the gap.
        """
        sub = await self.subscribe(patterns, after, default="start")
        try:
            events = await sub.next_batch(limit, timeout=wait)
        finally:
            self.unsubscribe(sub)
        return await self._page(events, sub.cursor, raise_gap)

    async def poll_now(
        self,
        patterns: Sequence[str],
        after: str | None = None,
        *,
        limit: int = 100,
        raise_gap: bool = False,
    ) -> Page | Subscription:
        """:meth:`poll` without a wait, except that when there is nothing to
        read yet it returns the live subscription instead of an empty page.

        A long poll then waits on it with the others at its position:
        ``hub.polls.wait(sub, limit, answer)`` (:mod:`hubbub.core.polls`).

        Raises:
            GapError: as :meth:`poll`.
        """
        sub = await self.subscribe(patterns, after, default="start")
        try:
            events = await sub.next_batch(limit, timeout=0)
        except BaseException:
            self.unsubscribe(sub)
            raise
        if not events and sub.state is State.LIVE:
            return sub
        self.unsubscribe(sub)
        return await self._page(events, sub.cursor, raise_gap)

    async def _page(self, events: list[Event], cursor: str, raise_gap: bool) -> Page:
        if not events or isinstance(events[0], Message):
            # Gaps come first in a batch: these are all messages.
            messages: list[Message] = events  # type: ignore[assignment]
            gaps: list[Gap] = []
        else:
            messages = [e for e in events if isinstance(e, Message)]
            gaps = [e for e in events if isinstance(e, Gap)]
        if gaps and raise_gap:
            gap = gaps[0]
            cont = await self._start_of(gap.topic, await self.engine.topic(gap.topic))
            raise GapError(
                "history was lost after the cursor",
                field="after",
                topic=gap.topic,
                **{"from": gap.first, "to": gap.last},
                reason=gap.reason,
                cursor=cont.cursor,
            )
        return Page(messages, cursor, gaps)


__all__ = ["MAX_TOPICS_PER_SUBSCRIPTION", "Event", "Gap", "Hub", "Page", "PublishItem",
           "Subscription", "compact_json", "encode_value", "scoped_key"]
