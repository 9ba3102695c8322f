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
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ..config import Config
from ..engines.base import AppendRequest, AppendResult, Engine, TopicInfo
from ..loop.tasks import cancel_and_wait
from ..protocol import cursor as _cursor
from ..protocol.errors import (
    Forbidden,
    GapError,
    HubbubError,
    InvalidCursor,
    InvalidRequest,
    LimitExceeded,
    PayloadTooLarge,
    Unavailable,
)
from ..protocol.message import JSON, Message, compact_json
from ..protocol.topicindex import TopicIndex
from ..protocol.topics import TopicFilter, namespace, validate_pattern, validate_topic
from . import tracing
from .auth import Auth
from .connections import ADMIN_NAMESPACE, Connections
from .fanout import FanOut
from .groups import Groups
from .jobs import Jobs
from .metrics import Metrics
from .nodes import Nodes
from .polls import Polls
from .presence import Presence
from .requests import Requests
from .subscription import Event, Gap, Position, State, Subscription
from .tally import Tally
from .uploads import Uploads
from .values import Page, PublishItem, encode_value, scoped_key

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")
MAX_TOPICS_PER_SUBSCRIPTION = 100
#: Most topics a pattern read looks up one by one (:meth:`Hub._matching`).
INDEX_MATCHES = 256
TRIM_INTERVAL = 30.0


class Hub:
    """Topics, cursors, fan-out and subscriptions over one :class:`Engine`."""

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

    def _check_open(self) -> None:
        if self.draining:
            raise Unavailable("hub is shutting down")

    # -- publishing ---------------------------------------------------------

    def _request(
        self, topic: str, data: bytes, content_type: str, key: str | None, prefix: str = "",
        owner: str | None = None,
    ) -> AppendRequest:
        """Validate one message; error fields are ``prefix`` + topic, data or key."""
        validate_topic(topic, field=prefix + "topic")
        if topic.startswith(ADMIN_NAMESPACE):
            # Orders to every node travel there (core.connections): nobody forges them.
            raise Forbidden("the _admin namespace is written by the hub only",
                            field=prefix + "topic")
        ns = self.config.for_topic(topic)
        if len(data) > ns.max_message_size:
            raise PayloadTooLarge(
                f"message is larger than {ns.max_message_size} bytes", field=prefix + "data"
            )
        if content_type == JSON:
            data = compact_json(data, field=prefix + "data",
                                max_depth=self.config.limits.json_depth)
        if key is not None and _KEY_RE.fullmatch(key) is None:
            raise InvalidRequest(
                "idempotency key must be 1-200 printable ASCII characters", field=prefix + "key"
            )
        if key is not None:
            key = scoped_key(key, owner)
        # ns.retention.max_messages, without making a Retention per message
        return AppendRequest(topic, data, content_type, key, ns.history_size or None)

    async def publish(
        self, topic: str, data: bytes, content_type: str = JSON, key: str | None = None, *,
        owner: str | None = None, limit_topics: bool = False,
    ) -> AppendResult:
        """Store one message and fan it out; returns after the store committed it.

        Args:
            key: an idempotency key: a retry with the same key (and ``owner``)
                stores nothing and returns the first receipt.
            owner: the publisher's subject; keys are scoped to it.
            limit_topics: a client asked for it: refuse to create a topic past
                ``[limits] topics`` and ``topics_per_namespace``.

        Raises:
            InvalidTopic, InvalidRequest, PayloadTooLarge: bad input; nothing stored.
            Unavailable: the store failed or the hub is draining; nothing stored.
        """
        self._check_open()
        req = self._request(topic, data, content_type, key, owner=owner)
        if limit_topics:
            self._check_new_topics([req])
        (result,) = await self._append([req])
        return result

    async def publish_batch(self, items: Sequence[PublishItem], *,
                            limit_topics: bool = False) -> list[AppendResult]:
        """Store several messages atomically: all are validated first, then all stored.
        ``limit_topics`` as for :meth:`publish`.

        Raises:
            InvalidRequest: an item is bad (``field`` names it); nothing stored.
        """
        self._check_open()
        if not items:
            raise InvalidRequest("batch is empty")
        reqs = [self._request(item.topic, item.data, item.content_type, item.key, f"[{i}].",
                              item.owner)
                for i, item in enumerate(items)]
        if limit_topics:
            self._check_new_topics(reqs)
        return await self._append(reqs)

    def _check_new_topics(self, reqs: Sequence[AppendRequest]) -> None:
        """Refuse requests that would create topics past ``[limits]``.

        Counted from the index, so concurrent first publishes may pass a limit by
        as many topics as they create; nothing is stored when refused.

        Raises:
            LimitExceeded: ``field`` is the topic, ``limit`` the setting.
        """
        if len(reqs) == 1 and reqs[0].topic in self.topics:
            return  # one message to a known topic: a publish's case, made cheap
        limits = self.config.limits
        new = [t for t in dict.fromkeys(r.topic for r in reqs) if t not in self.topics]
        if not new:
            return
        if limits.topics and len(self.topics) + len(new) > limits.topics:
            raise LimitExceeded(f"the hub has {limits.topics} topics, its limit; "
                                f"publish to an existing topic", field="topic", limit="topics")
        if limits.topics_per_namespace:
            for ns, n in Counter(namespace(t) for t in new).items():
                if self.topics.in_namespace(ns) + n > limits.topics_per_namespace:
                    raise LimitExceeded(
                        f"namespace {ns} has {limits.topics_per_namespace} topics, its limit",
                        field="topic", limit="topics_per_namespace")

    async def _append(self, reqs: list[AppendRequest]) -> list[AppendResult]:
        """Store validated messages; count them and the commit's latency."""
        if self.tracer is not None:
            return await self._append_traced(reqs, self.tracer)
        return await self._commit(reqs)

    async def _commit(self, reqs: list[AppendRequest]) -> list[AppendResult]:
        """The engine's append, its failures and its latency counted."""
        started = time.perf_counter()
        try:
            results = await self.engine.append(reqs, self.now())
        except Unavailable:
            self.metrics.store_errors["append"] += 1
            raise
        self.metrics.stored(results, time.perf_counter() - started)
        return results

    async def _append_traced(self, reqs: list[AppendRequest], spans: Tracer
                             ) -> list[AppendResult]:
        """:meth:`_append` inside the spans of :mod:`hubbub.core.tracing`."""
        from opentelemetry.trace import SpanKind

        topic = reqs[0].topic
        with spans.start_as_current_span("hubbub publish", kind=SpanKind.PRODUCER, attributes={
                **tracing.SYSTEM, "messaging.destination.name": topic,
                "messaging.batch.message_count": len(reqs)}) as span:
            with spans.start_as_current_span("hubbub store.append", attributes={
                    **tracing.SYSTEM, "hubbub.engine": type(self.engine).__name__}):
                results = await self._commit(reqs)
            span.set_attribute("hubbub.offset", results[0].message.offset)
            with spans.start_as_current_span("hubbub fanout", attributes={
                    **tracing.SYSTEM, "hubbub.subscribers": self.fanout.count(topic)}):
                pass  # handed over at commit; the writes come at the loop pass's end
        return results

    # -- reading ----------------------------------------------------------------

    def topic_filter(self, patterns: Sequence[str]) -> TopicFilter:
        """Validate subscription patterns.

        Raises:
            InvalidTopic: a pattern is malformed, or there are none or too many.
        """
        if not patterns:
            raise InvalidRequest("at least one topic is required", field="topic")
        if len(patterns) > MAX_TOPICS_PER_SUBSCRIPTION:
            raise InvalidRequest(
                f"at most {MAX_TOPICS_PER_SUBSCRIPTION} topics per subscription", field="topic"
            )
        for p in patterns:
            validate_pattern(p)
        return TopicFilter(patterns)

    async def _start_of(self, topic: str, info: TopicInfo | None) -> Position:
        store = self.engine.store_epoch
        if info is None:
            return Position(store, 0, single=True)
        seq = info.trim_seq if info.trim_offset else info.start_seq
        return Position(store, seq, info.epoch, info.first_offset - 1, single=True)

    async def resolve(
        self, filt: TopicFilter, after: str | None, default: Literal["start", "end"]
    ) -> tuple[Position, list[Gap]]:
        """The position an ``after`` argument names for this filter, and gaps already known.

        Raises:
            InvalidCursor: malformed, from another topic (Rule 4 of
                :mod:`hubbub.protocol.cursor`), or ahead of the log.
        """
        anchor = _cursor.parse_after(after) or default
        store = self.engine.store_epoch
        topic = filt.single_topic
        if topic is not None:
            info = await self.engine.topic(topic)
            if anchor == _cursor.START:
                return await self._start_of(topic, info), []
            if anchor == _cursor.END:
                if info is None:
                    return Position(store, await self.engine.head_seq(), single=True), []
                return Position(store, info.last_seq, info.epoch, info.last_offset, single=True), []
            assert isinstance(anchor, _cursor.Cursor)
            known = await self.engine.lookup_epoch(anchor.epoch)
            if known is None or (known.topic == topic and not known.current):
                start = await self._start_of(topic, info)
                return start, [Gap(topic, 1, start.offset, "epoch")]
            if known.topic is None:
                await self._check_seq(anchor.seq)
                return Position(store, anchor.seq, single=True), []
            if known.topic != topic:
                raise InvalidCursor("cursor belongs to another topic", field="after")
            assert info is not None
            if anchor.offset > info.last_offset or anchor.seq > info.last_seq:
                raise InvalidCursor("cursor is ahead of the log", field="after")
            return Position(store, anchor.seq, anchor.epoch, anchor.offset, single=True), []
        if anchor == _cursor.START:
            return Position(store, 0), []
        if anchor == _cursor.END:
            return Position(store, await self.engine.head_seq()), []
        assert isinstance(anchor, _cursor.Cursor)
        if await self.engine.lookup_epoch(anchor.epoch) is None:
            gaps = [
                Gap(t.name, 1, t.first_offset - 1, "epoch")
                for t in await self.engine.topics() if filt(t.name)
            ]
            return Position(store, 0), gaps
        await self._check_seq(anchor.seq)
        return Position(store, anchor.seq), []

    async def _check_seq(self, seq: int) -> None:
        if seq > await self.engine.head_seq():
            raise InvalidCursor("cursor is ahead of the log", field="after")

    async def read_position(
        self, filt: TopicFilter, pos: Position, limit: int
    ) -> tuple[list[Message], list[tuple[str, int, int, int]]]:
        """A page of the store after ``pos``, and the trims that passed it.

        Each trim is ``(topic, trim_offset, trim_seq, first_lost)``, listed when
        the topic was trimmed beyond the position.
        """
        engine = self.engine
        topic = filt.single_topic
        if topic is not None:
            info = await engine.topic(topic)
            if info is None:
                return [], []
            if pos.epoch == info.epoch:
                # The gap is read off the page itself: a trim may run between
                # any two awaits, so topic info alone could hide one.
                msgs = await engine.read(topic, pos.offset, limit)
                if msgs:
                    first, trim_seq = msgs[0].offset, msgs[0].seq - 1
                else:
                    now = await engine.topic(topic) or info
                    first, trim_seq = now.first_offset, now.trim_seq
                if first > pos.offset + 1:
                    return msgs, [(topic, first - 1, trim_seq, pos.offset + 1)]
                return msgs, []
            trims = []
            if info.trim_seq > pos.seq:
                trims.append((topic, info.trim_offset, info.trim_seq, 1))
            return await engine.read_seq([topic], pos.seq, limit), trims
        infos, horizon = await self._matching(filt)
        trims = [
            (t.name, t.trim_offset, t.trim_seq, 1) for t in infos if t.trim_seq > pos.seq
        ]
        if not infos:
            return [], trims
        names = None if filt.patterns == (">",) else [t.name for t in infos]
        msgs = await engine.read_seq(names, pos.seq, limit)
        # Messages committed after the topic list was taken may belong to topics
        # missing from it; stop at the list's horizon. Anything newer reaches the
        # subscription live (it registered before reading), so nothing is lost.
        if msgs and msgs[-1].seq > horizon:
            msgs = [m for m in msgs if m.seq <= horizon]
        return msgs, trims

    async def _matching(self, filt: TopicFilter) -> tuple[list[TopicInfo], int]:
        """The topics ``filt`` matches, and the seq up to which no other can have
        a message (the list's horizon).

        A few patterns resolve through the index (:mod:`hubbub.protocol.topicindex`)
        and the store is asked about the matches only; its horizon is the newest
        seq whose topic the index holds. Past :data:`INDEX_MATCHES` matches one
        listing of the store costs less than a look-up each, and its horizon is
        the newest message listed.
        """
        horizon = self._indexed_seq
        names: set[str] = set()
        if filt.patterns != (">",):
            for pattern in filt.patterns:
                names.update(self.topics.match(pattern))
                if len(names) > INDEX_MATCHES:
                    break
        if filt.patterns == (">",) or len(names) > INDEX_MATCHES:
            every = await self.engine.topics()
            return [t for t in every if filt(t.name)], max((t.last_seq for t in every), default=0)
        found = await asyncio.gather(*(self.engine.topic(n) for n in sorted(names)))
        return [t for t in found if t is not None], horizon

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
        sub = Subscription(
            self._read_counted, self._release, filt, Position(self.engine.store_epoch, 0),
            buffer=buffer or self.config.server.buffer,
            is_ephemeral=self._is_ephemeral,
        )
        # Register before the first read (Rule 1 of core.subscription).
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

    # -- metadata ---------------------------------------------------------------

    def describe(self, info: TopicInfo) -> dict[str, Any]:
        ns = self.config.for_topic(info.name)
        return {
            "topic": info.name,
            "epoch": info.epoch,
            "first_offset": info.first_offset,
            "last_offset": info.last_offset,
            "count": info.count,
            "cursor": _cursor.encode(info.epoch, info.last_offset, info.last_seq),
            "created": info.created,
            "ephemeral": ns.ephemeral,
            "retention": {"history_size": ns.history_size, "history_age": ns.history_age},
            "subscribers": self.fanout.count(info.name),
        }

    async def topic_info(self, topic: str) -> dict[str, Any] | None:
        validate_topic(topic)
        info = await self.engine.topic(topic)
        return None if info is None else self.describe(info)

    async def list_topics(
        self, pattern: str | None = None, *, after: str | None = None, limit: int = 1000,
        allowed: Callable[[str], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """A page of topics in name order, and the name to list ``after`` next
        (``None``: this was the last page).

        Args:
            pattern: only topics it matches.
            after: a topic name: list those after it.
            allowed: only topics it says yes to (the caller's grant).
        Raises:
            InvalidTopic: a bad ``pattern`` or ``after``.
        """
        if after is not None:
            validate_topic(after, field="after")
        if pattern:
            validate_pattern(pattern, field="pattern")
            names: Iterator[str] = (n for n in sorted(self.topics.match(pattern))
                                    if after is None or n > after)
        else:
            names = self.topics.sorted_from(after)
        page: list[str] = []
        for name in names:
            if allowed is None or allowed(name):
                page.append(name)
                if len(page) > limit:
                    break
        more = len(page) > limit
        page = page[:limit]
        found = await asyncio.gather(*(self.engine.topic(n) for n in page))
        return ([self.describe(t) for t in found if t is not None],
                page[-1] if more else None)


__all__ = ["Event", "Gap", "Hub", "Page", "PublishItem", "Subscription", "compact_json",
           "encode_value", "scoped_key"]
