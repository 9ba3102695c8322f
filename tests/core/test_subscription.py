"""Subscriptions read without waiting: ``take_ready`` and ``park`` (the WebSocket
door's idle subscriptions hold no task), next to ``next_batch``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.config import Config
from hubbub.core import Gap, Hub, PublishItem
from hubbub.core.subscription import Position, State, Subscription
from hubbub.engines import open_engine
from hubbub.protocol.errors import SlowConsumer
from hubbub.protocol.message import Message
from hubbub.protocol.topics import TopicFilter
from tests.conftest import ENGINES, store_url

CONFIG = Config.from_dict({"namespaces": {"eph": {"ephemeral": True}}})


@pytest.fixture(params=ENGINES)
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    h = Hub(open_engine(store_url(request.param, tmp_path)), CONFIG)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def delivered() -> None:
    """Let the fan-out deliver: it does at the end of the loop pass in which
    messages commit (:mod:`hubbub.core.fanout`, invariant "one delivery per pass")."""
    await asyncio.sleep(0)


def offsets(events: list[Message | Gap] | None) -> list[int]:
    assert events is not None
    return [e.offset for e in events if isinstance(e, Message)]


async def test_park_calls_back_once_then_take_ready_hands_over(hub: Hub) -> None:
    """A parked subscription calls back once for a burst; take_ready then has all of it."""
    sub = await hub.subscribe(["p.a"])
    assert sub.take_ready() is None  # still catching up: only next_batch answers
    assert await sub.next_batch(timeout=0) == []  # now live
    calls: list[int] = []
    assert sub.park(lambda: calls.append(1))
    await hub.publish_batch([PublishItem("p.a", b"%d" % i) for i in range(3)])
    last = (await hub.publish("p.a", b"3")).message
    await delivered()
    assert calls == [1]
    assert offsets(sub.take_ready()) == [1, 2, 3, 4]
    assert sub.take_ready() == []
    assert sub.cursor == last.cursor
    sub.close()


async def test_take_ready_honours_max_items_and_moves_the_cursor(hub: Hub) -> None:
    """Pages of take_ready continue exactly; the cursor follows the last one taken."""
    sub = await hub.subscribe(["p.b"])
    assert await sub.next_batch(timeout=0) == []
    results = [(await hub.publish("p.b", b"%d" % i)).message for i in range(5)]
    await delivered()
    assert offsets(sub.take_ready(2)) == [1, 2]
    assert sub.cursor == results[1].cursor
    assert offsets(sub.take_ready(10)) == [3, 4, 5]
    assert sub.cursor == results[4].cursor
    sub.close()


async def test_park_refuses_while_something_is_ready(hub: Hub) -> None:
    """With events waiting, park says no (read now) and registers nothing."""
    sub = await hub.subscribe(["p.c"])
    assert await sub.next_batch(timeout=0) == []
    await hub.publish("p.c", b"1")
    await delivered()
    calls: list[int] = []
    assert not sub.park(lambda: calls.append(1))
    await hub.publish("p.c", b"2")
    await delivered()
    assert calls == []
    assert offsets(sub.take_ready()) == [1, 2]
    sub.close()


async def test_close_wakes_a_parked_subscription(hub: Hub) -> None:
    """Closing (or a drain) calls a parked reader back; take_ready then says None."""
    sub = await hub.subscribe(["p.d"])
    assert await sub.next_batch(timeout=0) == []
    calls: list[int] = []
    assert sub.park(lambda: calls.append(1))
    await hub.drain()
    assert calls == [1]
    assert sub.take_ready() is None
    assert await sub.next_batch() == []


async def test_cut_off_after_the_buffer_is_taken(hub: Hub) -> None:
    """Past its buffer a parked durable subscriber is called back; take_ready hands
    the buffer over, then None, and next_batch raises SlowConsumer."""
    sub = await hub.subscribe(["p.e"], buffer=4)
    assert await sub.next_batch(timeout=0) == []
    calls: list[int] = []
    assert sub.park(lambda: calls.append(1))
    for i in range(6):
        await hub.publish("p.e", b"%d" % i)
    await delivered()
    assert calls == [1]
    assert offsets(sub.take_ready()) == [1, 2, 3, 4]
    assert sub.take_ready() is None
    with pytest.raises(SlowConsumer):
        await sub.next_batch()


async def test_ephemeral_drops_come_as_a_gap_first(hub: Hub) -> None:
    """On an ephemeral topic take_ready says the dropped range before the messages."""
    sub = await hub.subscribe(["eph.t"], buffer=2)
    assert await sub.next_batch(timeout=0) == []
    for i in range(5):
        await hub.publish("eph.t", b"%d" % i)
    await delivered()
    events = sub.take_ready()
    assert events is not None and events[0] == Gap("eph.t", 3, 5, "dropped")
    assert offsets(events) == [1, 2]
    sub.close()



async def test_a_pass_of_mixed_topics_reaches_each_subscriber_in_commit_order(hub: Hub) -> None:
    """What commits in one loop pass is delivered together (core/fanout.py): a
    one-topic subscriber gets its topic's messages, a several-topic or wildcard
    one the messages its filter matches, each in seq order, each once."""
    one = await hub.subscribe(["f.a"])
    two = await hub.subscribe(["f.a", "f.b"])
    wild = await hub.subscribe(["f.*"])
    for sub in (one, two, wild):
        assert await sub.next_batch(timeout=0) == []
    results = await hub.publish_batch(
        [PublishItem(t, b"1") for t in ["f.a", "f.b", "f.c", "f.a", "f.b"]])
    results.append(await hub.publish("f.a", b"2"))
    await delivered()
    msgs = [r.message for r in results]

    def seqs(sub: Subscription, topics: set[str]) -> None:
        got = sub.take_ready()
        assert got is not None
        assert [m.seq for m in got] == [m.seq for m in msgs if m.topic in topics]

    seqs(one, {"f.a"})
    seqs(two, {"f.a", "f.b"})
    seqs(wild, {"f.a", "f.b", "f.c"})
    for sub in (one, two, wild):
        sub.close()


def _live(seq: int, buffer: int) -> Subscription:
    """A live one-topic subscription standing at ``seq``, fed by hand."""
    async def read(*_: object) -> tuple[list[Message], list[tuple[str, int, int, int]]]:
        return [], []
    sub = Subscription(read, lambda s: None, TopicFilter(["h.t"]),
                       Position("E", seq, "e", seq, single=True), buffer=buffer)
    sub.state = State.LIVE
    return sub


def _msg(seq: int) -> Message:
    return Message(topic="h.t", epoch="e", offset=seq, seq=seq, time=0, id=str(seq), data=b"1")


@given(start=st.integers(0, 5), feeds=st.lists(st.lists(st.integers(1, 12), max_size=6), max_size=6),
       takes=st.lists(st.integers(1, 8), min_size=1, max_size=8))
def test_take_ready_hands_out_each_fed_message_once_in_pages(
        start: int, feeds: list[list[int]], takes: list[int]) -> None:
    """Whether a take is the whole queue (the short path) or a page of it,
    take_ready hands out every message fed, in order, each once, at most a page
    at a time, and the cursor follows the last message handed out."""
    sub = _live(start, buffer=1000)
    waiting: list[int] = []  # what was fed and not yet handed out
    handed = start
    last = start
    for feed in feeds:  # in seq order across feeds, as the fan-out feeds
        msgs = [_msg(last + s) for s in sorted(set(feed))]
        if msgs:
            last = msgs[-1].seq
            sub.feed_many(msgs)
            waiting += [m.seq for m in msgs]
        for page in takes:
            got = sub.take_ready(page)
            assert got is not None
            assert [m.seq for m in got] == waiting[:page]
            if got:
                handed = got[-1].seq
            del waiting[:page]
            assert sub.position.seq == handed
