"""Fan-out: hand each committed message to every matching subscription.

Theory of operation
-------------------
The engine's listener hands committed messages over as they commit, often
one publish at a time. The fan-out does not deliver them at once: it keeps
what comes in one pass of the event loop and delivers it at the end of the
pass (:class:`~hubbub.loop.passes.PerPass`), so a subscriber gets every message
of the pass in one :meth:`~hubbub.core.subscription.Subscription.feed_many`
call, and a connection writes them in one write. Under load, when many
publishes are processed per pass, the work per subscriber is per pass, not
per message.

Invariants
----------
"seq order, each once": Each subscription gets its messages in seq order, each once. A
    subscription to one concrete topic (the common case) is fed that
    topic's messages of the pass in one list; one with several patterns
    or a wildcard is fed the pass's messages its filter matches, in the
    order they committed.
"one delivery per pass": What commits in a pass is delivered by one callback, which the loop
    runs before it next waits for I/O. Subscriptions registered in
    between may get a message from the fan-out and from their first
    store read; the subscription drops the second copy by seq
    (:mod:`hubbub.core.subscription`, invariant "live only after a short page").

Serialization happens at most once per message and wire format, lazily, in
:class:`~hubbub.protocol.message.Message`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ..loop.passes import PerPass
from ..protocol.message import Message

if TYPE_CHECKING:
    from .subscription import Subscription


class FanOut:
    """The registry of live subscriptions, fed by the engine's listener."""

    def __init__(self) -> None:
        #: Every subscription naming a concrete topic, by topic.
        self.exact: dict[str, dict[Subscription, None]] = {}
        #: Subscriptions with a wildcard pattern.
        self.wild: dict[Subscription, None] = {}
        #: Subscriptions with more than one pattern or a wildcard: fed by their filter (invariant "seq order, each once").
        self._mixed: dict[Subscription, None] = {}
        #: Committed messages fed in (from every node, on a cluster); read by /metrics.
        self.messages = 0
        #: Messages committed in this loop pass, delivered at its end.
        self._pass: PerPass[Message] = PerPass(self._deliver)

    def add(self, sub: Subscription) -> None:
        """Register ``sub``; from now on it is fed every matching committed message."""
        filt = sub.topics
        for p in filt.patterns:
            if p in filt.exact:
                self.exact.setdefault(p, {})[sub] = None
        if filt.wild:
            self.wild[sub] = None
        if filt.wild or len(filt.patterns) > 1:
            self._mixed[sub] = None

    def remove(self, sub: Subscription) -> None:
        """Unregister ``sub``. Idempotent."""
        for p in sub.topics.patterns:
            subs = self.exact.get(p)
            if subs is not None:
                subs.pop(sub, None)
                if not subs:
                    del self.exact[p]
        self.wild.pop(sub, None)
        self._mixed.pop(sub, None)

    def targets(self, topic: str) -> Iterator[Subscription]:
        """The subscriptions a message of ``topic`` goes to, each once."""
        exact = self.exact.get(topic)
        if exact:
            yield from list(exact)
        for sub in list(self.wild):
            if sub.topics(topic) and (exact is None or sub not in exact):
                yield sub

    def publish(self, messages: Sequence[Message]) -> None:
        """Take committed ``messages`` (in seq order) for delivery at the end of
        this loop pass (called on the event loop)."""
        if not messages:
            return
        self.messages += len(messages)
        self._pass.extend(messages)

    def _deliver(self, batch: list[Message]) -> None:
        first = batch[0].topic
        if all(m.topic == first for m in batch):
            by_topic = {first: batch}
        else:
            by_topic = {}
            for m in batch:
                msgs = by_topic.get(m.topic)
                if msgs is None:
                    by_topic[m.topic] = [m]
                else:
                    msgs.append(m)
        mixed = self._mixed
        for topic, msgs in by_topic.items():
            subs = self.exact.get(topic)
            if subs:
                for sub in list(subs):
                    if sub not in mixed:
                        sub.feed_many(msgs)
        for sub in list(mixed):
            filt = sub.topics
            mine = [m for m in batch if filt(m.topic)]
            if mine:
                sub.feed_many(mine)

    def count(self, topic: str) -> int:
        """How many live subscriptions on this node would receive a message of ``topic``."""
        return sum(1 for _ in self.targets(topic))

    def __len__(self) -> int:
        subs = set(self.wild)
        for s in self.exact.values():
            subs.update(s)
        return len(subs)
