"""Fan-out: hand each committed message to every matching subscription.

Per message and subscriber the work is one ``feed()`` call: a deque append
and, for an idle reader, waking its future. Serialization happens at most once
per message and wire format, lazily, in :class:`~hubbub.message.Message`.
Subscriptions to concrete topics are found by one dict lookup; wildcard
subscriptions are checked with their (caching) filters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..message import Message

if TYPE_CHECKING:
    from .subscription import Subscription


class FanOut:
    """The registry of live subscriptions, fed by the engine's listener."""

    def __init__(self) -> None:
        self.exact: dict[str, dict[Subscription, None]] = {}
        self.wild: dict[Subscription, None] = {}
        #: Committed messages fed in (from every node, on a cluster); read by /metrics.
        self.messages = 0

    def add(self, sub: Subscription) -> None:
        """Register ``sub``; from now on it is fed every matching committed message."""
        filt = sub.topics
        for p in filt.patterns:
            if p in filt.exact:
                self.exact.setdefault(p, {})[sub] = None
        if filt.wild:
            self.wild[sub] = None

    def remove(self, sub: Subscription) -> None:
        """Unregister ``sub``. Idempotent."""
        for p in sub.topics.patterns:
            subs = self.exact.get(p)
            if subs is not None:
                subs.pop(sub, None)
                if not subs:
                    del self.exact[p]
        self.wild.pop(sub, None)

    def targets(self, topic: str) -> Iterator[Subscription]:
        """The subscriptions a message of ``topic`` goes to, each once."""
        exact = self.exact.get(topic)
        if exact:
            yield from list(exact)
        for sub in list(self.wild):
            if sub.topics(topic) and (exact is None or sub not in exact):
                yield sub

    def publish(self, messages: Sequence[Message]) -> None:
        """Feed committed ``messages`` (in seq order) to their subscriptions."""
        self.messages += len(messages)
        for msg in messages:
            for sub in self.targets(msg.topic):
                sub.feed(msg)

    def count(self, topic: str) -> int:
        """How many live subscriptions on this node would receive a message of ``topic``."""
        return sum(1 for _ in self.targets(topic))

    def __len__(self) -> int:
        subs = set(self.wild)
        for s in self.exact.values():
            subs.update(s)
        return len(subs)
