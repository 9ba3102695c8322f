"""Topic metadata: what ``GET /v1/topics`` and ``GET /v1/topics/{topic}`` answer.

The part of :class:`~hubbub.core.hub.Hub` that describes topics: their
offsets, epoch, retention and subscribers, one by one or a page at a time in
name order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

from ..config import Config
from ..engines.base import Engine, TopicInfo
from ..protocol import cursor as _cursor
from ..protocol.topicindex import TopicIndex
from ..protocol.topics import validate_pattern, validate_topic
from .fanout import FanOut


class Catalog:
    """The hub's topic metadata methods (mixed into :class:`~hubbub.core.hub.Hub`)."""

    engine: Engine
    config: Config
    fanout: FanOut
    topics: TopicIndex

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


__all__ = ["Catalog"]
