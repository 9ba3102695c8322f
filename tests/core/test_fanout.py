"""The fan-out: committed messages to matching subscriptions, once per loop pass.

:class:`hubbub.core.fanout.FanOut` with recording stand-ins for subscriptions
(a topic filter and ``feed_many``), so only the fan-out's own logic is under
test: who gets what, in which order, in how many calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st

from hubbub.core.fanout import FanOut
from hubbub.protocol.message import JSON, Message
from hubbub.protocol.topics import TopicFilter


class Recorder:
    """A subscription that records every ``feed_many`` call."""

    def __init__(self, *patterns: str) -> None:
        self.topics = TopicFilter(patterns)
        self.calls: list[list[tuple[str, int]]] = []

    def feed_many(self, msgs: Sequence[Message]) -> None:
        self.calls.append([(m.topic, m.seq) for m in msgs])

    @property
    def got(self) -> list[tuple[str, int]]:
        return [m for call in self.calls for m in call]


def messages(*topics: str, first_seq: int = 1) -> list[Message]:
    return [Message(t, "abcdefghij", i, seq, 0, f"id{seq}", b"1", JSON)
            for i, (seq, t) in enumerate(enumerate(topics, first_seq), 1)]


async def one_pass() -> None:
    """Let the loop run the fan-out's end-of-pass callback."""
    await asyncio.sleep(0)


async def test_a_pass_s_messages_reach_each_subscription_in_one_call() -> None:
    """Messages published in one loop pass are delivered at its end, one call per
    subscription, in seq order."""
    fanout = FanOut()
    a = Recorder("chat.1")
    fanout.add(a)
    fanout.publish(messages("chat.1", "chat.1"))
    fanout.publish(messages("chat.1", first_seq=3))
    assert a.calls == []  # not before the end of the pass
    await one_pass()
    assert a.calls == [[("chat.1", 1), ("chat.1", 2), ("chat.1", 3)]]
    assert fanout.messages == 3


async def test_exact_wild_and_mixed_subscriptions_get_what_they_match() -> None:
    """A concrete topic gets its topic's messages; a wildcard or several patterns get
    every message they match, each once, in commit order."""
    fanout = FanOut()
    exact, wild, mixed, other = (Recorder("a.x"), Recorder("a.*"), Recorder("a.x", "b.>"),
                                 Recorder("c.x"))
    for sub in (exact, wild, mixed, other):
        fanout.add(sub)
    fanout.publish(messages("a.x", "b.y.z", "a.y", "a.x"))
    await one_pass()
    assert exact.got == [("a.x", 1), ("a.x", 4)]
    assert wild.got == [("a.x", 1), ("a.y", 3), ("a.x", 4)]
    assert mixed.got == [("a.x", 1), ("b.y.z", 2), ("a.x", 4)]
    assert other.calls == []


async def test_targets_count_and_len_name_each_subscription_once() -> None:
    """A subscription matching a topic both exactly and by wildcard is one target."""
    fanout = FanOut()
    both, wild = Recorder("a.x", "a.*"), Recorder(">")
    fanout.add(both)
    fanout.add(wild)
    assert fanout.count("a.x") == 2 and fanout.count("b") == 1
    assert set(fanout.targets("a.x")) == {both, wild}
    assert len(fanout) == 2


async def test_a_removed_subscription_gets_nothing_and_remove_is_idempotent() -> None:
    """After remove() nothing more is fed, and the registry forgets the topic."""
    fanout = FanOut()
    a, b = Recorder("t"), Recorder("t", "u.*")
    fanout.add(a)
    fanout.add(b)
    fanout.remove(a)
    fanout.remove(a)
    fanout.publish(messages("t"))
    await one_pass()
    assert a.calls == [] and b.got == [("t", 1)]
    fanout.remove(b)
    assert fanout.exact == {} and len(fanout) == 0


async def test_an_empty_publish_is_nothing() -> None:
    """Publishing no messages counts nothing and feeds nobody."""
    fanout = FanOut()
    a = Recorder(">")
    fanout.add(a)
    fanout.publish([])
    await one_pass()
    assert a.calls == [] and fanout.messages == 0


@given(st.lists(st.sampled_from(["a", "b", "a.b", "b.c"]), min_size=1, max_size=20),
       st.lists(st.sets(st.sampled_from(["a", "b", "a.b", "*", "a.*", ">", "b.>"]),
                        min_size=1), min_size=1, max_size=5))
def test_every_subscription_gets_exactly_its_matches_in_order(
        topics: list[str], filters: list[set[str]]) -> None:
    """Whatever the topics and filters, each subscription gets the messages its
    filter matches, each once, in seq order."""
    async def run() -> None:
        fanout = FanOut()
        subs = [Recorder(*sorted(f)) for f in filters]
        for sub in subs:
            fanout.add(sub)
        fanout.publish(messages(*topics))
        await one_pass()
        for sub in subs:
            want = [(t, seq) for seq, t in enumerate(topics, 1) if sub.topics(t)]
            assert sub.got == want
    asyncio.run(run())
