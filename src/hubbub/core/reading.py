"""Reading topic logs: where a cursor points, and a page of the store after it.

The part of :class:`~hubbub.core.hub.Hub` that reads: it turns an ``after``
argument into a :class:`~hubbub.core.subscription.Position` (and the gaps
already known), and reads pages after a position, saying which trims passed
it. Subscriptions and polls read through it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

from ..engines.base import Engine, TopicInfo
from ..protocol import cursor as _cursor
from ..protocol.errors import InvalidCursor, InvalidRequest
from ..protocol.message import Message
from ..protocol.topicindex import TopicIndex
from ..protocol.topics import TopicFilter, validate_pattern
from .subscription import Gap, Position

MAX_TOPICS_PER_SUBSCRIPTION = 100
#: Most topics a pattern read looks up one by one (:meth:`Reading._matching`).
INDEX_MATCHES = 256


class Reading:
    """The hub's reading methods (mixed into :class:`~hubbub.core.hub.Hub`)."""

    engine: Engine
    topics: TopicIndex
    _indexed_seq: int

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
            InvalidCursor: malformed, from another topic (:mod:`hubbub.protocol.cursor`,
                invariant "foreign cursor refused"), or ahead of the log.
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


__all__ = ["INDEX_MATCHES", "MAX_TOPICS_PER_SUBSCRIPTION", "Reading"]
