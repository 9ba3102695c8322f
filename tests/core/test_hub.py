"""The hub core driven directly, with no server: cursors, hand-over, gaps, slow readers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hubbub.config import Config
from hubbub.core import Gap, Hub, PublishItem
from hubbub.engines import open_engine
from hubbub.protocol.errors import (
    GapError,
    InvalidCursor,
    InvalidRequest,
    SlowConsumer,
    Unavailable,
)
from hubbub.protocol.message import Message
from tests.conftest import ENGINES, UNIT, store_url

SMALL = Config.from_dict(
    {"namespaces": {"small": {"history_size": 3}, "eph": {"ephemeral": True}}}
)


@pytest.fixture(params=ENGINES)
async def hub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Hub]:
    url = store_url(request.param, tmp_path)
    h = Hub(open_engine(url), SMALL)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def pub(hub: Hub, topic: str, n: int, start: int = 0) -> list[Message]:
    return [(await hub.publish(topic, b"%d" % i)).message for i in range(start, start + n)]


def values(events: list[Message | Gap]) -> list[object]:
    return [e.value() for e in events if isinstance(e, Message)]


async def test_poll_pages_through_history_with_cursors(hub: Hub) -> None:
    """Each page's cursor continues exactly where the page ended."""
    await pub(hub, "t.a", 25)
    seen: list[object] = []
    after = None
    for _ in range(5):
        page = await hub.poll(["t.a"], after, limit=10)
        seen += [m.value() for m in page.messages]
        after = page.cursor
    assert seen == list(range(25))
    assert (await hub.poll(["t.a"], after)).messages == []


async def test_long_poll_answers_on_publish(hub: Hub) -> None:
    """A waiting poll returns the message as soon as it is stored."""
    task = asyncio.create_task(hub.poll(["t.b"], "end", wait=10 * UNIT))
    await asyncio.sleep(0.05)
    await hub.publish("t.b", b'"hello"')
    async with asyncio.timeout(UNIT):
        page = await task
    assert [m.value() for m in page.messages] == ["hello"]


async def test_ten_thousand_long_polls_all_wake(hub: Hub) -> None:
    """10,000 concurrent waiting polls all answer after one publish."""
    start = (await hub.poll(["t.many"], "end")).cursor
    tasks = [asyncio.create_task(hub.poll(["t.many"], start, wait=60 * UNIT)) for _ in range(10_000)]
    async with asyncio.timeout(30 * UNIT):
        while len(hub.fanout) < 10_000:  # every poll is registered and waiting
            await asyncio.sleep(0.05)
    await hub.publish("t.many", b"1")
    async with asyncio.timeout(30 * UNIT):
        pages = await asyncio.gather(*tasks)
    assert all([m.value() for m in p.messages] == [1] for p in pages)
    assert len(hub.fanout) == 0


async def test_catch_up_hands_over_to_live_without_loss_or_repeat(hub: Hub) -> None:
    """Publishing while a subscriber replays history: it gets every message once, in order."""
    await pub(hub, "t.h", 1200)
    sub = await hub.subscribe(["t.h"], "start")

    async def more() -> None:
        for i in range(1200, 1600):
            await hub.publish("t.h", b"%d" % i)
            if i % 50 == 0:
                await asyncio.sleep(0)

    writer = asyncio.create_task(more())
    got: list[object] = []
    async with asyncio.timeout(30 * UNIT):
        while len(got) < 1600:
            got += values(await sub.next_batch())
    await writer
    sub.close()
    assert got == list(range(1600))


async def test_pattern_subscription_picks_up_new_topics_and_resumes(hub: Hub) -> None:
    """A wildcard subscription sees topics that appear later; its cursor resumes exactly."""
    await hub.publish("room.a", b"1")
    sub = await hub.subscribe(["room.*"], "start")
    first = await sub.next_batch()
    assert values(first) == [1]
    await hub.publish("room.b", b"2")
    await hub.publish("other.x", b"99")
    await hub.publish("room.c", b"3")
    got = values(await sub.next_batch(timeout=UNIT))
    while len(got) < 2:
        got += values(await sub.next_batch(timeout=UNIT))
    assert got == [2, 3]
    cursor = sub.cursor
    sub.close()
    await hub.publish("room.d", b"4")
    await hub.publish("room.a", b"5")
    page = await hub.poll(["room.*"], cursor)
    assert [m.value() for m in page.messages] == [4, 5]
    # A message's own cursor resumes a multi-topic subscription too
    # (:mod:`hubbub.protocol.cursor`, invariant "seq is the watermark").
    page = await hub.poll(["room.*"], first[0].cursor)  # type: ignore[union-attr]
    assert [m.value() for m in page.messages] == [2, 3, 4, 5]


async def test_single_topic_gap_raises_with_continuation(hub: Hub) -> None:
    """A cursor behind trimmed history is a GapError with the lost range and where to go on."""
    msgs = await pub(hub, "small.t", 10)
    with pytest.raises(GapError) as exc:
        await hub.poll(["small.t"], msgs[1].cursor, raise_gap=True)
    extra = exc.value.extra
    assert (extra["from"], extra["to"], extra["reason"]) == (3, 7, "trimmed")
    page = await hub.poll(["small.t"], extra["cursor"])
    assert [m.value() for m in page.messages] == [7, 8, 9]


async def test_subscription_says_gap_before_messages(hub: Hub) -> None:
    """A subscription resuming behind the trim point yields a Gap, then what is retained."""
    msgs = await pub(hub, "small.u", 10)
    sub = await hub.subscribe(["small.u"], msgs[0].cursor)
    events = await sub.next_batch()
    sub.close()
    assert events[0] == Gap("small.u", 2, 7, "trimmed")
    assert values(events[1:]) == [7, 8, 9]


async def test_multi_topic_gap_is_said_once(hub: Hub) -> None:
    """Over a pattern, a trimmed topic's gap is reported in-band, once across pages."""
    await hub.publish("small.x", b"0")
    start = (await hub.poll(["small.*"], "end")).cursor
    await pub(hub, "small.x", 10, 1)
    page = await hub.poll(["small.*"], start, limit=2)
    assert [(g.topic, g.last, g.reason) for g in page.gaps] == [("small.x", 8, "trimmed")]
    assert [m.value() for m in page.messages] == [8, 9]
    page2 = await hub.poll(["small.*"], page.cursor)
    assert page2.gaps == [] and [m.value() for m in page2.messages] == [10]


async def test_unknown_epoch_is_an_epoch_gap(hub: Hub) -> None:
    """A cursor from a lost store is reported as an epoch gap, then history follows."""
    await pub(hub, "t.e", 2)
    sub = await hub.subscribe(["t.e"], "zzzzzzzzzz.5.9")
    events = await sub.next_batch()
    sub.close()
    assert isinstance(events[0], Gap) and events[0].reason == "epoch"
    assert values(events[1:]) == [0, 1]


async def test_foreign_and_ahead_cursors_are_refused(hub: Hub) -> None:
    """Another topic's cursor, or one past the end of the log, is an InvalidCursor."""
    (a,) = await pub(hub, "t.one", 1)
    await pub(hub, "t.two", 1)
    with pytest.raises(InvalidCursor, match="another topic"):
        await hub.poll(["t.two"], a.cursor)
    with pytest.raises(InvalidCursor, match="ahead"):
        await hub.poll(["t.one"], f"{a.epoch}.7.{a.seq}")
    with pytest.raises(InvalidCursor, match="ahead"):
        await hub.poll(["t.*"], f"{a.epoch}.1.999999")
    assert len(hub.fanout) == 0


async def test_slow_subscriber_is_cut_off_with_its_cursor(hub: Hub) -> None:
    """Past its buffer a durable subscriber gets SlowConsumer; the others get everything."""
    slow = await hub.subscribe(["t.s"], buffer=10)
    fast = await hub.subscribe(["t.s"], buffer=10)
    for s in (slow, fast):  # both reach the live tail before the burst
        assert await s.next_batch(timeout=0) == []
    got: list[object] = []
    for i in range(50):
        await hub.publish("t.s", b"%d" % i)
        got += values(await fast.next_batch(timeout=UNIT))
    assert got == list(range(50))
    batch = await slow.next_batch()
    assert values(batch) == list(range(10))
    with pytest.raises(SlowConsumer) as exc:
        await slow.next_batch()
    page = await hub.poll(["t.s"], exc.value.extra["cursor"], limit=100)
    assert [m.value() for m in page.messages] == list(range(10, 50))
    fast.close()


async def test_ephemeral_slow_subscriber_drops_and_says_so(hub: Hub) -> None:
    """On an ephemeral namespace, overflow drops messages and reports a dropped gap."""
    sub = await hub.subscribe(["eph.t"], buffer=5)
    assert await sub.next_batch(timeout=0) == []
    await pub(hub, "eph.t", 12)
    events = await sub.next_batch()
    events += await sub.next_batch(timeout=0.1)
    sub.close()
    assert Gap("eph.t", 6, 12, "dropped") in events
    assert values(events) == [0, 1, 2, 3, 4]
    assert sub.dropped == 7


async def test_batch_is_validated_before_anything_is_stored(hub: Hub) -> None:
    """One bad item refuses the whole batch, naming its index."""
    items = [PublishItem("t.ok", b"1"), PublishItem("bad topic", b"2")]
    with pytest.raises(InvalidRequest) as exc:
        await hub.publish_batch(items)
    assert exc.value.field == "[1].topic"
    assert await hub.engine.topic("t.ok") is None


async def test_idempotent_publish_stores_once(hub: Hub) -> None:
    """A retried publish with the same key returns the first message and stores nothing."""
    a = await hub.publish("t.k", b"1", key="k1")
    b = await hub.publish("t.k", b"2", key="k1")
    assert b.duplicate and b.message.cursor == a.message.cursor
    assert [m.value() for m in (await hub.poll(["t.k"])).messages] == [1]


async def test_malformed_json_is_refused(hub: Hub) -> None:
    """JSON payloads are validated and stored compact."""
    with pytest.raises(InvalidRequest, match="malformed JSON"):
        await hub.publish("t.j", b"{nope")
    r = await hub.publish("t.j", b'{ "a" :\n 1 }')
    assert r.message.data == b'{"a":1}'


async def test_drain_ends_subscriptions_and_refuses_publishes(hub: Hub) -> None:
    """Draining closes every subscription and refuses new work as Unavailable."""
    sub = await hub.subscribe(["t.d"])
    waiter = asyncio.create_task(sub.next_batch())
    await asyncio.sleep(0.01)
    await hub.drain()
    async with asyncio.timeout(UNIT):
        assert await waiter == []
    with pytest.raises(Unavailable):
        await hub.publish("t.d", b"1")


async def test_a_deleted_topic_leaves_the_index_and_counts_toward_no_limit(hub: Hub) -> None:
    """Deleting a topic's log takes its name out of the node's topic index (the
    reset order every node obeys), so a topic limit can be reached again."""
    from hubbub.core import topics_admin

    await hub.publish("gone.a", b"1")
    assert "gone.a" in hub.topics
    await topics_admin.delete(hub, "gone.a")
    async with asyncio.timeout(10 * UNIT):
        while "gone.a" in hub.topics:  # the order comes back through the store's feed
            await asyncio.sleep(0.01)
    assert (await hub.list_topics("gone.*"))[0] == []
