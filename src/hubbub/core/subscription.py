"""Subscriptions: follow a set of topics from a cursor, from the store, then live.

Theory of operation
-------------------
A :class:`Subscription` has a position (see :mod:`hubbub.protocol.cursor`) and a
:class:`~hubbub.protocol.topics.TopicFilter`. It is registered with the
:class:`~hubbub.core.fanout.FanOut` *before* it first reads the store, so
nothing committed after registration can slip past it. It then moves through
these states:

====================  ==============================================  ==========
state                 what happens                                    next
====================  ==============================================  ==========
``CATCHING_UP``       pages are read from the store after the         ``LIVE``
                      position; live messages wait in ``_pending``
``LIVE``              live messages go to ``_queue``; the reader       ``CLOSED``
                      drains it
``CLOSED``            the reader gets nothing more                    --
====================  ==============================================  ==========

Invariants
----------
"live only after a short page": The switch to ``LIVE`` happens only after a store page came back
    short (the store had nothing more at that moment). Pending messages
    with a seq at or below the position are dropped as already delivered,
    so the hand-over loses nothing and repeats nothing.
"overflow reads the store again": If ``_pending`` overflows while catching up, it is discarded and the
    store is read again: the store has every message that was dropped.
"a slow subscriber waits alone": When ``_queue`` is full in ``LIVE``, a message of a durable topic cuts
    the subscriber off (:class:`~hubbub.protocol.errors.SlowConsumer` carrying the
    resume cursor): nothing is lost, the client resumes. A message of an
    ephemeral topic is dropped and counted, and the reader is told with a
    ``dropped`` gap. Either way the publisher and the other subscribers
    never wait for a slow one.
"gaps are said": Gaps are said, never hidden: a position behind the retained history,
    or in a log the store no longer has, yields a :class:`Gap` before the
    next messages.

A reader awaits :meth:`Subscription.next_batch`, or, once live, may *park*
instead (:meth:`Subscription.park`): hold no task and no future, and be called
back on the next news, then take what is ready with
:meth:`Subscription.take_ready`. An idle WebSocket subscription and a group of
waiting long polls (:mod:`hubbub.core.polls`) cost no task that way. A batch
lists its gaps before its messages, in seq order.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from ..protocol.errors import HubbubError, SlowConsumer
from ..protocol.message import Message
from ..protocol.topics import TopicFilter

#: Reads a page of the store after a position: ``(messages, trims)``, see
#: :meth:`hubbub.core.hub.Hub.read_position`.
Reader = Callable[
    [TopicFilter, "Position", int],
    Awaitable[tuple[list[Message], list[tuple[str, int, int, int]]]],
]

PAGE = 500


class State(enum.Enum):
    CATCHING_UP = "catching-up"
    LIVE = "live"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Gap:
    """Messages of ``topic`` the reader will never get.

    ``first``..``last`` are offsets in the topic's current epoch (``last`` may
    be below ``first`` when nothing of the current epoch was lost). ``reason``
    is ``"trimmed"`` (retention removed them), ``"epoch"`` (the log was reset
    or lost) or ``"dropped"`` (an ephemeral topic's slow reader skipped them).
    For subscriptions over several topics ``first`` is a lower bound.
    """

    topic: str
    first: int
    last: int
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {"topic": self.topic, "from": self.first, "to": self.last, "reason": self.reason}


Event = Message | Gap


class Position:
    """Where a subscription stands.

    ``seq`` is the store-wide watermark: every matching message with a seq at
    or below it was delivered. A single-topic position (``single``) also
    tracks ``epoch``/``offset`` once it stands in the topic's current epoch.
    """

    __slots__ = ("epoch", "offset", "seq", "single", "store_epoch")

    def __init__(
        self,
        store_epoch: str,
        seq: int,
        epoch: str | None = None,
        offset: int = 0,
        single: bool = False,
    ) -> None:
        self.store_epoch = store_epoch
        self.seq = seq
        self.epoch = epoch
        self.offset = offset
        self.single = single

    @property
    def cursor(self) -> str:
        if self.epoch is not None:
            return f"{self.epoch}.{self.offset}.{self.seq}"
        return f"{self.store_epoch}.0.{self.seq}"

    def advance(self, msg: Message) -> None:
        self.seq = msg.seq
        if self.single:
            self.epoch, self.offset = msg.epoch, msg.offset


class Subscription:
    """An async iterator of batches of :data:`Event` over a set of topics.

    Use ``async for batch in sub`` or :meth:`next_batch`; call :meth:`close`
    (or ``async with``) when done. :attr:`cursor` is always the position to
    resume from after the events handed out so far.
    """

    # A hub holds many idle subscriptions: slots, and lists rather than deques
    # for the buffers (an empty deque takes about 760 bytes, an empty list 56).
    __slots__ = (
        "_read", "_release", "topics", "position", "state", "buffer", "dropped",
        "_is_ephemeral", "_gaps", "_pending", "_pending_overflow", "_queue",
        "_dropped_ranges", "_cut_off", "_error", "_waiter", "_reported", "_on_ready",
    )

    def __init__(
        self,
        read: Reader,
        release: Callable[[Subscription], None],
        topics: TopicFilter,
        position: Position,
        *,
        gaps: Sequence[Gap] = (),
        buffer: int = 1024,
        is_ephemeral: Callable[[str], bool] = lambda topic: False,
    ) -> None:
        self._read = read
        self._release = release  # stop feeding us and forget us; idempotent
        self.topics = topics
        self.position = position
        self.state = State.CATCHING_UP
        self.buffer = buffer
        self.dropped = 0
        self._is_ephemeral = is_ephemeral
        self._gaps: list[Gap] = list(gaps)
        self._pending: list[Message] = []
        self._pending_overflow = False
        #: Live messages in seq order, not yet handed out.
        self._queue: list[Message] = []
        #: Ranges of ephemeral messages dropped, by topic, and the trims said,
        #: by topic: made on first use (an idle subscription should cost little).
        self._dropped_ranges: dict[str, list[int]] | None = None
        self._cut_off = False
        self._error: HubbubError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._reported: dict[str, int] | None = None
        self._on_ready: Callable[[], None] | None = None

    # -- fed by the fan-out (event loop, never blocks) --------------------

    def feed(self, msg: Message) -> None:
        """Take one live message (called by the fan-out, in seq order)."""
        if self.state is State.LIVE:
            if msg.seq <= self.position.seq and not self._queue:
                return
            if len(self._queue) >= self.buffer:
                if self._is_ephemeral(msg.topic):
                    self.dropped += 1
                    ranges = self._dropped_ranges
                    if ranges is None:
                        ranges = self._dropped_ranges = {}
                    rng = ranges.setdefault(msg.topic, [msg.offset, msg.offset])
                    rng[1] = msg.offset
                    self._wake()
                    return
                self._cut_off = True
                self._release(self)
                self._wake()
                return
            self._queue.append(msg)
            self._wake()
        elif self.state is State.CATCHING_UP:
            if len(self._pending) >= self.buffer:
                self._pending.clear()
                self._pending_overflow = True
            else:
                self._pending.append(msg)

    def feed_many(self, msgs: Sequence[Message]) -> None:
        """Take live messages (called by the fan-out, in seq order): what
        :meth:`feed` of each would do, with one wake-up."""
        if self.state is State.LIVE:
            q = self._queue
            if not q:
                seq = self.position.seq
                if msgs[0].seq <= seq:  # a head delivered already (from the store)
                    msgs = [m for m in msgs if m.seq > seq]
                    if not msgs:
                        return
            if len(q) + len(msgs) <= self.buffer:
                q.extend(msgs)
                self._wake()
                return
        elif self.state is State.CATCHING_UP:
            if len(self._pending) + len(msgs) <= self.buffer:
                self._pending.extend(msgs)
                return
        else:
            return
        for msg in msgs:  # past the buffer: one by one (invariants "overflow reads the store again" and "a slow subscriber waits alone")
            self.feed(msg)

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)
        ready = self._on_ready
        if ready is not None:
            self._on_ready = None
            ready()

    # -- read by the transport --------------------------------------------

    @property
    def cursor(self) -> str:
        return self.position.cursor

    @property
    def cut_off(self) -> bool:
        """Whether the fan-out cut this reader off for falling behind (invariant "a slow subscriber waits alone")."""
        return self._cut_off

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> list[Event]:
        batch = await self.next_batch()
        if not batch:
            raise StopAsyncIteration
        return batch

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    async def next_batch(self, max_items: int = PAGE, timeout: float | None = None) -> list[Event]:
        """The next events, waiting up to ``timeout`` seconds (``None``: forever).

        Returns ``[]`` when the subscription is closed or the wait ended empty.

        Raises:
            SlowConsumer: the reader fell behind its buffer on a durable topic;
                resume from ``exc.extra["cursor"]``.
            HubbubError: the one given to :meth:`fail`; resume from
                ``exc.extra["cursor"]``.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._error is not None and self.state is not State.CLOSED:
                exc = self._error
                exc.extra.setdefault("cursor", self.cursor)
                self.close()
                raise exc
            if self.state is State.CLOSED:
                return []
            if self.state is State.CATCHING_UP:
                batch = await self._catch_up(max_items)
                if batch:
                    return batch
                continue
            batch = self._take_live(max_items)
            if batch:
                return batch
            if self._cut_off:
                self.close()
                raise SlowConsumer(
                    "subscriber fell behind its buffer; resume from the cursor",
                    cursor=self.cursor,
                )
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return []
            self._waiter = waiter = loop.create_future()
            try:
                if remaining is None:
                    await waiter  # no timeout object kept by every idle reader
                else:
                    async with asyncio.timeout(remaining):
                        await waiter
            except TimeoutError:
                return []
            finally:
                self._waiter = None

    def take_ready(self, max_items: int = PAGE) -> list[Event] | None:
        """The events of a live subscription that are ready now, perhaps none,
        without waiting: what :meth:`next_batch` would return at once.

        Returns ``None`` when only :meth:`next_batch` can answer: the
        subscription is catching up, closed, failed or cut off.
        """
        if self.state is not State.LIVE or self._error is not None:
            return None
        batch = self._take_live(max_items)
        if batch or not self._cut_off:
            return batch
        return None

    @property
    def error(self) -> HubbubError | None:
        """What :meth:`fail` ended the subscription with (with ``extra["cursor"]``
        to resume from), while it is not closed; else ``None``."""
        if self._error is None or self.state is State.CLOSED:
            return None
        self._error.extra.setdefault("cursor", self.cursor)
        return self._error

    def park(self, ready: Callable[[], None]) -> bool:
        """Have ``ready()`` called once, instead of a reader waiting in
        :meth:`next_batch`, as soon as there is news: events to take, an end,
        an error.

        It is called synchronously from the fan-out (or :meth:`close`,
        :meth:`fail`), so it should only schedule the reading. Returns
        ``False`` and parks nothing when there is news already, or the
        subscription is not live: then read now.
        """
        if (self.state is not State.LIVE or self._error is not None or self._cut_off
                or self._queue or self._dropped_ranges):
            return False
        self._on_ready = ready
        return True

    async def _catch_up(self, max_items: int) -> list[Event]:
        events: list[Event] = list(self._gaps)
        self._gaps.clear()
        # A poll's page is its limit (bounded by the server's max_limit).
        limit = max(1, max_items - len(events))
        self._pending_overflow = False
        msgs, trims = await self._read(self.topics, self.position, limit)
        if self.state is State.CLOSED:
            return []
        last_seq = msgs[-1].seq if msgs else None
        events.extend(self._trim_gaps(trims, last_seq, short=len(msgs) < limit))
        if msgs:
            self.position.advance(msgs[-1])  # a page is in order: its last message
            if events:
                events.extend(msgs)
            else:
                events = msgs  # type: ignore[assignment]  # list is invariant
        if len(msgs) < limit and not self._pending_overflow:
            # invariant "live only after a short page": the store had nothing more; hand over to live delivery.
            self.state = State.LIVE
            seq = self.position.seq
            self._queue.extend(m for m in self._pending if m.seq > seq)
            self._pending = []
        return events

    def _trim_gaps(
        self, trims: Sequence[tuple[str, int, int, int]], last_seq: int | None, short: bool
    ) -> list[Gap]:
        """Gaps for topics trimmed past the position (invariant "gaps are said").

        A topic trimmed up to seq ``t`` lost its messages with seqs in
        ``(position, t]``; the gap is said once, with the page that reaches
        ``t`` (or the page that finds the store exhausted).
        """
        out: list[Gap] = []
        if not trims:
            return out
        reported = self._reported
        if reported is None:
            reported = self._reported = {}
        for topic, trim_offset, trim_seq, first_lost in trims:
            if trim_seq <= reported.get(topic, 0):
                continue
            if not short and last_seq is not None and trim_seq > last_seq:
                continue
            reported[topic] = trim_seq
            if first_lost <= trim_offset:
                out.append(Gap(topic, first_lost, trim_offset, "trimmed"))
        return out

    def _take_live(self, max_items: int) -> list[Event]:
        q = self._queue
        if (q and len(q) <= max_items and not self._dropped_ranges
                and q[0].seq > self.position.seq):
            # The common case, in short: the whole queue, messages only, all new.
            self._queue = []
            self.position.advance(q[-1])
            return q  # type: ignore[return-value]  # list is invariant
        events: list[Event] = []
        if self._dropped_ranges:
            for topic, (first, last) in self._dropped_ranges.items():
                events.append(Gap(topic, first, last, "dropped"))
            self._dropped_ranges = None
        q = self._queue
        room = max_items - len(events)
        if not q or room <= 0:
            return events
        if len(q) <= room:
            taken, self._queue = q, []
        else:
            taken = q[:room]
            del q[:room]
        # The queue is in seq order (the fan-out feeds in seq order), so the
        # position moves once, to the last message, and only a head already
        # delivered (at or below the position) needs dropping.
        seq = self.position.seq
        if taken[0].seq <= seq:
            taken = [m for m in taken if m.seq > seq]
            if not taken:
                return events
        self.position.advance(taken[-1])
        if not events:
            return taken  # type: ignore[return-value]  # list is invariant
        events.extend(taken)
        return events

    def add_gaps(self, gaps: Sequence[Gap]) -> None:
        """Queue gaps to be handed out before the next messages."""
        self._gaps.extend(gaps)

    def fail(self, exc: HubbubError) -> None:
        """End the subscription with ``exc``: instead of further events, the
        reader gets it, with ``extra["cursor"]`` to resume from.

        For when live delivery may have missed messages (an engine lost its
        fan-out link): the client resumes from the store, which has them.
        """
        if self.state is State.CLOSED or self._error is not None:
            return
        self._error = exc
        self._release(self)
        self._wake()

    def close(self) -> None:
        """Stop the subscription; pending readers get ``[]``. Idempotent."""
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._release(self)
        self._queue = []
        self._pending = []
        self._wake()
