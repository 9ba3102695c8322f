"""Reading a log from its end, on every engine: ``Engine.read_before`` and the pages
of :func:`hubbub.core.history.read_before` built on it."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.core.history import read_before
from hubbub.engines.base import Engine, Retention
from hubbub.protocol import cursor as _cursor
from hubbub.protocol.errors import GapError, InvalidCursor
from tests.engines.conftest import bounded, req


async def fill(engine: Engine, topic: str, n: int, now: int = 1000) -> None:
    for i in range(n):
        await engine.append([req(topic, i + 1)], now)


@bounded()
async def test_read_before_offset_with_limit(engine: Engine) -> None:
    """read_before() returns the newest retained messages before the offset, oldest
    first, up to limit; nothing for an unknown topic or an offset at the start."""
    await fill(engine, "r", 10)
    await fill(engine, "other", 3)

    async def offsets(before: int, limit: int, topic: str = "r") -> list[int]:
        return [m.offset for m in await engine.read_before(topic, before, limit)]

    assert await offsets(11, 100) == list(range(1, 11))
    assert await offsets(11, 3) == [8, 9, 10]
    assert await offsets(10**12, 2) == [9, 10]
    assert await offsets(2**63 - 1, 2) == [9, 10]
    assert await offsets(5, 10) == [1, 2, 3, 4]
    assert await offsets(5, 2) == [3, 4]
    assert await offsets(1, 5) == []
    assert await offsets(0, 5) == []
    assert await offsets(11, 0) == []
    assert await offsets(11, 5, "unknown") == []
    assert [m.value() for m in await engine.read_before("r", 3, 5)] == [1, 2]
    assert all(m.topic == "r" for m in await engine.read_before("r", 11, 100))
    # trimmed messages are not returned
    await engine.trim(lambda t: Retention(max_messages=4), 2000)
    assert await offsets(11, 100) == [7, 8, 9, 10]
    assert await offsets(8, 100) == [7]
    assert await offsets(7, 100) == []


@bounded()
async def test_history_pages_and_cursors(engine: Engine) -> None:
    """before=end: the newest page, prev to go back (None at the start), cursor to read
    on; the pages' cursors work as ``after`` positions."""
    assert (await read_before(engine, "h", "end", 5)).messages == []
    await fill(engine, "h", 7)
    page = await read_before(engine, "h", "end", 3)
    assert [m.offset for m in page.messages] == [5, 6, 7]
    assert page.cursor == page.messages[-1].cursor
    assert page.prev is not None
    prev = _cursor.decode(page.prev)
    assert prev.offset == 4 and [m.offset for m in await engine.read("h", prev.offset, 1)] == [5]
    page2 = await read_before(engine, "h", page.prev, 3)
    assert [m.offset for m in page2.messages] == [2, 3, 4] and page2.cursor == page.prev
    page3 = await read_before(engine, "h", page2.prev or "", 3)
    assert [m.offset for m in page3.messages] == [1] and page3.prev is None
    # a message's own cursor: that message comes last
    own = await read_before(engine, "h", page.messages[0].cursor, 2)
    assert [m.offset for m in own.messages] == [4, 5]
    # exactly the topic's length: the last page has no prev
    whole = await read_before(engine, "h", "end", 7)
    assert len(whole.messages) == 7 and whole.prev is None


@bounded()
async def test_bad_before_cursors_are_refused(engine: Engine) -> None:
    """Malformed, another topic's, ahead of the log, a watermark: InvalidCursor on
    ``before``; an unknown epoch is a gap carrying the current end."""
    await fill(engine, "a", 3)
    await fill(engine, "b", 3)
    a_end = (await read_before(engine, "a", "end", 1)).cursor
    b_end = (await read_before(engine, "b", "end", 1)).cursor
    ahead = _cursor.decode(a_end)
    for bad in ("nope", "start", b_end,
                _cursor.encode(ahead.epoch, ahead.offset + 1, ahead.seq + 5),
                _cursor.encode(engine.store_epoch, 0, 1)):
        with pytest.raises(InvalidCursor) as info:
            await read_before(engine, "a", bad, 5)
        assert info.value.field == "before"
    with pytest.raises(GapError) as gap:
        await read_before(engine, "a", _cursor.encode("zzzzzzzzzz", 1, 1), 5)
    assert gap.value.extra["cursor"] == a_end and gap.value.field == "before"


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 40), limit=st.integers(1, 12), trimmed=st.integers(0, 10),
       during=st.lists(st.integers(0, 5), max_size=4))
async def test_paging_back_gives_every_message_once_in_order(
    engine: Engine, n: int, limit: int, trimmed: int, during: list[int]
) -> None:
    """From ``end``, then each ``prev``: every retained message once, in order, however
    the topic is trimmed and whatever is stored between the pages (which
    ``after=cursor`` of the first page then reads, each once)."""
    topic = "p" + uuid.uuid4().hex[:8]
    await fill(engine, topic, n)
    keep = max(n - trimmed, 1)
    await engine.trim(lambda t: Retention(max_messages=keep) if t == topic else Retention(), 2000)
    first_kept = max(1, n - keep + 1)
    got: list[int] = []
    page = await read_before(engine, topic, "end", limit)
    live = _cursor.decode(page.cursor) if page.messages else None
    pages = 0
    while True:
        got[:0] = [m.offset for m in page.messages]
        assert len(page.messages) <= limit
        if pages < len(during):
            await fill(engine, topic, during[pages])  # new messages go to the end only
        pages += 1
        if page.prev is None:
            break
        page = await read_before(engine, topic, page.prev, limit)
    assert got == list(range(first_kept, n + 1)) if n else got == []
    if live is not None:
        later = await engine.read(topic, live.offset, 1000)
        assert [m.offset for m in later] == list(range(n + 1, n + 1 + sum(during[:pages])))


@bounded()
async def test_delete_topic_starts_a_new_epoch(engine: Engine) -> None:
    """delete_topic(): the log and its state go; the next append starts a new epoch at
    offset 1 with a larger seq; the old epoch is never current again; other topics and
    unknown topics are untouched."""
    await fill(engine, "d", 3)
    await fill(engine, "keep", 2)
    old = await engine.topic("d")
    assert old is not None
    assert await engine.delete_topic("d") is True
    assert await engine.delete_topic("d") is False
    assert await engine.delete_topic("never") is False
    assert await engine.topic("d") is None
    assert await engine.read("d", 0, 10) == []
    assert await engine.read_before("d", 10, 10) == []
    assert [t.name for t in await engine.topics()] == ["keep"]
    known = await engine.lookup_epoch(old.epoch)
    assert known is None or (known.topic == "d" and not known.current)
    (result,) = await engine.append([req("d", 9, key="k")], 2000)
    m = result.message
    assert (m.offset, m.epoch != old.epoch, m.seq > old.last_seq) == (1, True, True)
    assert not result.duplicate
    new = await engine.lookup_epoch(m.epoch)
    assert new is not None and new.current
    assert [x.offset for x in await engine.read("keep", 0, 10)] == [1, 2]
