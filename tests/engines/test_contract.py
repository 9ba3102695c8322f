"""The Engine contract (:mod:`hubbub.engines.base`), run against every engine.

Each test runs once per engine (``memory``, ``sqlite``): see ``conftest.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hubbub.engines.base import AppendRequest, Engine, EpochInfo, Retention
from hubbub.protocol.message import Message

from .conftest import MakeEngine, bounded, req

T0 = 1_700_000_000_000


class Recorder:
    """A listener that records every call."""

    def __init__(self) -> None:
        self.calls: list[list[Message]] = []

    def __call__(self, messages: Sequence[Message]) -> None:
        self.calls.append(list(messages))

    @property
    def seqs(self) -> list[int]:
        return [m.seq for call in self.calls for m in call]


async def fill(engine: Engine, topic: str, n: int, now: int = T0) -> list[Message]:
    results = await engine.append([req(topic, i) for i in range(n)], now)
    return [r.message for r in results]


# -- positions ----------------------------------------------------------------


@bounded()
async def test_offsets_start_at_one_per_topic_and_grow_by_one(engine: Engine) -> None:
    """Each topic's offsets are 1, 2, 3, ... whatever other topics do."""
    offsets: dict[str, list[int]] = {"a": [], "b": []}
    for topic in ["a", "b", "a", "a", "b"]:
        (r,) = await engine.append([req(topic)], T0)
        offsets[topic].append(r.message.offset)
    batch = await engine.append([req("a"), req("b"), req("a")], T0)
    assert offsets == {"a": [1, 2, 3], "b": [1, 2]}
    assert [r.message.offset for r in batch] == [4, 3, 5]


@bounded()
async def test_seqs_grow_across_topics_in_append_order(engine: Engine) -> None:
    """Seqs are store-wide, strictly increasing in append (and request) order."""
    assert await engine.head_seq() == 0
    seqs = []
    for topic in ["x", "y", "x", "z"]:
        (r,) = await engine.append([req(topic)], T0)
        seqs.append(r.message.seq)
    batch = await engine.append([req("z"), req("x"), req("y")], T0)
    seqs += [r.message.seq for r in batch]
    assert seqs == sorted(set(seqs))
    assert seqs[0] >= 1
    assert await engine.head_seq() == seqs[-1]


@bounded()
async def test_concurrent_appends_are_stored_in_the_order_they_start(engine: Engine) -> None:
    """Appends started one after the other, none waiting for another's commit,
    get seqs and offsets in the order they started (a pipelined publisher)."""
    rec = Recorder()
    engine.add_listener(rec)
    topics = ["p.a", "p.b", "p.a", "p.a", "p.b"] * 40
    tasks = [asyncio.create_task(engine.append([req(t, i)], T0))
             for i, t in enumerate(topics)]
    results = [r for (r,) in await asyncio.gather(*tasks)]
    seqs = [r.message.seq for r in results]
    assert seqs == sorted(set(seqs))
    for topic in ("p.a", "p.b"):
        mine = [r.message for r in results if r.message.topic == topic]
        assert [m.offset for m in mine] == list(range(1, len(mine) + 1))
        assert [m.data for m in mine] == [
            str(i).encode() for i, t in enumerate(topics) if t == topic]
    assert rec.seqs == seqs  # listeners see them in the same order, each once


@bounded()
async def test_results_in_request_order_with_stored_fields(engine: Engine) -> None:
    """Results follow the requests; each message carries topic, epoch, now, data, type."""
    reqs = [req("t.1", '"one"'), AppendRequest("t.2", b"\x00\xff", "image/png"), req("t.1", 3)]
    results = await engine.append(reqs, T0 + 5)
    assert [(r.message.topic, r.message.data, r.message.content_type) for r in results] == [
        (q.topic, q.data, q.content_type) for q in reqs
    ]
    assert all(not r.duplicate and r.message.time == T0 + 5 for r in results)
    assert len({r.message.id for r in results}) == 3
    info = await engine.topic("t.1")
    assert info is not None and results[0].message.epoch == info.epoch
    assert results[0].message.epoch != results[1].message.epoch
    stored = await engine.read("t.2", 0, 10)
    assert [(m.data, m.content_type, m.id) for m in stored] == [
        (b"\x00\xff", "image/png", results[1].message.id)
    ]


@bounded()
async def test_a_batch_is_stored_together(engine: Engine) -> None:
    """A batch's messages get consecutive seqs and reach listeners in one call."""
    rec = Recorder()
    engine.add_listener(rec)
    await fill(engine, "pre", 1)
    results = await engine.append([req("a"), req("b"), req("a")], T0)
    seqs = [r.message.seq for r in results]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    assert [[m.seq for m in call] for call in rec.calls][-1] == seqs


@bounded()
async def test_empty_append_stores_nothing(engine: Engine) -> None:
    """Appending no requests returns [] and calls no listener."""
    rec = Recorder()
    engine.add_listener(rec)
    assert await engine.append([], T0) == []
    assert rec.calls == [] and await engine.head_seq() == 0


@bounded(20)
async def test_concurrent_appends_get_distinct_consecutive_offsets(engine: Engine) -> None:
    """200 concurrent appends to one topic get offsets 1..200, in seq order."""
    results = await asyncio.gather(*(engine.append([req("c", i)], T0) for i in range(200)))
    msgs = sorted((r.message for (r,) in results), key=lambda m: m.seq)
    assert [m.offset for m in msgs] == list(range(1, 201))
    assert [m.offset for m in await engine.read("c", 0, 500)] == list(range(1, 201))


# -- idempotency keys ---------------------------------------------------------


@bounded()
async def test_duplicate_key_returns_the_original_and_stores_nothing(engine: Engine) -> None:
    """A repeated (topic, key) answers the first message with duplicate=True."""
    rec = Recorder()
    engine.add_listener(rec)
    (first,) = await engine.append([req("k", 1, key="abc")], T0)
    (again,) = await engine.append([req("k", 2, key="abc")], T0 + 1)
    assert not first.duplicate and again.duplicate
    m, d = first.message, again.message
    assert (d.topic, d.epoch, d.offset, d.seq, d.time, d.id, d.data, d.content_type) == (
        m.topic, m.epoch, m.offset, m.seq, m.time, m.id, m.data, m.content_type)
    assert len(rec.calls) == 1
    assert [x.offset for x in await engine.read("k", 0, 10)] == [1]
    assert await engine.head_seq() == m.seq


@bounded()
async def test_duplicate_key_within_one_batch(engine: Engine) -> None:
    """A key repeated inside one batch stores once; the repeat is a duplicate."""
    results = await engine.append([req("k", 1, key="x"), req("k", 2, key="x"), req("k", 3)], T0)
    assert [r.duplicate for r in results] == [False, True, False]
    assert results[1].message.seq == results[0].message.seq
    assert [r.message.offset for r in results] == [1, 1, 2]


@bounded()
async def test_keys_are_per_topic(engine: Engine) -> None:
    """The same key on two topics stores two messages."""
    results = await engine.append([req("k1", key="same"), req("k2", key="same")], T0)
    assert [r.duplicate for r in results] == [False, False]


@bounded()
async def test_duplicate_of_a_trimmed_message_is_the_original(engine: Engine) -> None:
    """Once retention removed the original, a duplicate still answers it, data and all."""
    (first,) = await engine.append([req("k", '"orig"', key="a", max_messages=1)], T0)
    await engine.append([req("k", 2, max_messages=1)], T0)
    assert [m.offset for m in await engine.read("k", 0, 10)] == [2]
    (again,) = await engine.append([req("k", '"new"', key="a", max_messages=1)], T0)
    assert again.duplicate
    assert (again.message.seq, again.message.offset, again.message.data) == (
        first.message.seq, 1, b'"orig"')


@bounded()
async def test_expired_key_stores_anew(make_engine: MakeEngine) -> None:
    """After key_ttl_ms a key no longer dedups, also once trim() expired it."""
    engine = make_engine(key_ttl_ms=1000)
    await engine.open()
    try:
        (a,) = await engine.append([req("k", key="x")], T0)
        (b,) = await engine.append([req("k", key="x")], T0 + 999)
        (c,) = await engine.append([req("k", key="x")], T0 + 1000)
        assert b.duplicate and b.message.seq == a.message.seq
        assert not c.duplicate and c.message.offset == 2
        await engine.append([req("k", key="y")], T0 + 2000)
        await engine.trim(lambda _: Retention(), T0 + 3500)
        (d,) = await engine.append([req("k", key="y")], T0 + 3500)
        assert not d.duplicate and d.message.offset == 4
    finally:
        await engine.close()


# -- reading ------------------------------------------------------------------


@bounded()
async def test_read_after_offset_with_limit(engine: Engine) -> None:
    """read() returns retained messages after the offset, in offset order, up to limit."""
    await fill(engine, "r", 10)
    await fill(engine, "other", 3)

    async def offsets(after: int, limit: int, topic: str = "r") -> list[int]:
        return [m.offset for m in await engine.read(topic, after, limit)]

    assert await offsets(0, 100) == list(range(1, 11))
    assert await offsets(3, 4) == [4, 5, 6, 7]
    assert await offsets(9, 5) == [10]
    assert await offsets(10, 5) == []
    assert await offsets(0, 0) == []
    assert await offsets(-5, 2) == [1, 2]
    assert await offsets(0, 5, "unknown") == []
    assert all(m.topic == "r" for m in await engine.read("r", 0, 100))


@bounded()
async def test_read_seq_over_all_topics_and_a_subset(engine: Engine) -> None:
    """read_seq() returns messages after a seq in seq order, from all or some topics."""
    order = ["a", "b", "c", "a", "c", "b", "a"]
    msgs = [r.message for t in order for r in await engine.append([req(t)], T0)]
    seqs = [m.seq for m in msgs]

    async def read(topics: list[str] | None, after: int, limit: int) -> list[int]:
        return [m.seq for m in await engine.read_seq(topics, after, limit)]

    assert await read(None, 0, 100) == seqs
    assert await read(None, seqs[2], 3) == seqs[3:6]
    assert await read(["a", "c"], 0, 100) == [m.seq for m in msgs if m.topic in "ac"]
    assert await read(["c", "a", "a"], seqs[0], 2) == [seqs[2], seqs[3]]
    assert await read(["b", "nope"], 0, 100) == [seqs[1], seqs[5]]
    assert await read(["nope"], 0, 100) == []
    assert await read([], 0, 100) == []
    assert await read(None, seqs[-1], 100) == []
    assert await read(None, 0, 0) == []
    got = await engine.read_seq(["b"], 0, 1)
    assert (got[0].topic, got[0].offset, got[0].id) == ("b", 1, msgs[1].id)


@bounded(20)
async def test_read_seq_over_many_topics(engine: Engine) -> None:
    """read_seq() over many named topics keeps seq order and the limit."""
    names = [f"m.{i}" for i in range(50)]
    msgs = [r.message for r in await engine.append([req(n) for n in names * 3], T0)]
    wanted = [m.seq for m in msgs if m.topic != "m.7"]
    subset = [n for n in names if n != "m.7"]
    assert [m.seq for m in await engine.read_seq(subset, 0, 1000)] == wanted
    assert [m.seq for m in await engine.read_seq(subset, wanted[10], 20)] == wanted[11:31]


@bounded()
async def test_topic_info_fields(engine: Engine) -> None:
    """topic() reports epoch, first/last offset, last/start seq, trim point, count, created."""
    assert await engine.topic("t") is None
    await fill(engine, "other", 2, T0)
    msgs = await fill(engine, "t", 5, T0 + 1)
    info = await engine.topic("t")
    assert info is not None
    assert (info.name, info.epoch, info.created) == ("t", msgs[0].epoch, T0 + 1)
    assert (info.first_offset, info.last_offset, info.count) == (1, 5, 5)
    assert (info.last_seq, info.start_seq) == (msgs[-1].seq, msgs[0].seq - 1)
    assert (info.trim_offset, info.trim_seq) == (0, 0)
    await engine.append([req("t", max_messages=2)], T0 + 2)
    info = await engine.topic("t")
    assert info is not None
    assert (info.first_offset, info.last_offset, info.count) == (5, 6, 2)
    assert (info.trim_offset, info.trim_seq) == (4, msgs[3].seq)


@bounded()
async def test_topics_sorted_by_name(engine: Engine) -> None:
    """topics() lists every written topic, sorted by name, with the same info as topic()."""
    assert await engine.topics() == []
    for name in ["zeta", "alpha", "mid.x", "alpha"]:
        await engine.append([req(name)], T0)
    infos = await engine.topics()
    assert [i.name for i in infos] == ["alpha", "mid.x", "zeta"]
    assert infos == [await engine.topic(i.name) for i in infos]
    assert [i.count for i in infos] == [2, 1, 1]


@bounded()
async def test_lookup_epoch(engine: Engine) -> None:
    """The store epoch, each topic's epoch and an unknown epoch are told apart."""
    await fill(engine, "a", 1)
    await fill(engine, "b", 1)
    a, b = await engine.topic("a"), await engine.topic("b")
    assert a is not None and b is not None
    assert len({engine.store_epoch, a.epoch, b.epoch}) == 3
    assert await engine.lookup_epoch(engine.store_epoch) == EpochInfo(None, True)
    assert await engine.lookup_epoch(a.epoch) == EpochInfo("a", True)
    assert await engine.lookup_epoch(b.epoch) == EpochInfo("b", True)
    assert await engine.lookup_epoch("0000000000") is None


@bounded()
async def test_ping(engine: Engine) -> None:
    """An open engine answers ping()."""
    await engine.ping()


# -- retention ----------------------------------------------------------------


@bounded()
async def test_max_messages_trims_on_append(engine: Engine) -> None:
    """max_messages keeps the newest N, in the append's own transaction."""
    msgs = [r.message for i in range(5) for r in await engine.append([req("t", i)], T0)]
    results = await engine.append([req("t", 5, max_messages=3), req("t", 6)], T0)
    assert [m.offset for m in await engine.read("t", 0, 100)] == [4, 5, 6, 7]
    info = await engine.topic("t")
    assert info is not None and (info.trim_offset, info.trim_seq) == (3, msgs[2].seq)
    assert [m.offset for m in await engine.read_seq(["t"], 0, 100)] == [4, 5, 6, 7]
    await engine.append([req("t", max_messages=0)], T0)
    info = await engine.topic("t")
    assert info is not None and info.count == 0
    assert (info.first_offset, info.trim_offset, info.last_offset) == (9, 8, 8)
    assert info.trim_seq == info.last_seq > results[1].message.seq
    assert await engine.read("t", 0, 100) == []


@bounded()
async def test_trim_by_count(engine: Engine) -> None:
    """trim() keeps each topic's newest max_messages and returns how many went."""
    a = await fill(engine, "a", 6)
    await fill(engine, "b", 2)
    await fill(engine, "c", 4)
    limits = {"a": 2, "b": 5, "c": None}
    removed = await engine.trim(lambda t: Retention(max_messages=limits[t]), T0)
    assert removed == 4
    assert [m.offset for m in await engine.read("a", 0, 100)] == [5, 6]
    info = await engine.topic("a")
    assert info is not None and (info.trim_offset, info.trim_seq) == (4, a[3].seq)
    assert [(i.name, i.count) for i in await engine.topics()] == [("a", 2), ("b", 2), ("c", 4)]
    assert await engine.trim(lambda t: Retention(max_messages=limits[t]), T0) == 0


@bounded()
async def test_trim_by_age(engine: Engine) -> None:
    """trim() removes messages older than max_age_ms, oldest first."""
    old = await fill(engine, "t", 3, T0)
    await fill(engine, "t", 2, T0 + 1000)
    await fill(engine, "u", 2, T0)
    removed = await engine.trim(lambda t: Retention(max_age_ms=500), T0 + 1400)
    assert removed == 5
    assert [m.offset for m in await engine.read("t", 0, 100)] == [4, 5]
    assert await engine.read("u", 0, 100) == []
    info = await engine.topic("t")
    assert info is not None and (info.trim_offset, info.trim_seq) == (3, old[2].seq)
    u = await engine.topic("u")
    assert u is not None and (u.first_offset, u.last_offset, u.trim_offset) == (3, 2, 2)


@bounded()
async def test_trim_by_count_and_age(engine: Engine) -> None:
    """With both limits, the stricter one wins."""
    await fill(engine, "t", 4, T0)
    await fill(engine, "t", 4, T0 + 1000)
    assert await engine.trim(lambda t: Retention(3, 5000), T0 + 1000) == 5
    assert await engine.trim(lambda t: Retention(10, 500), T0 + 1000) == 0
    assert await engine.trim(lambda t: Retention(10, 500), T0 + 1500) == 0
    assert await engine.trim(lambda t: Retention(10, 500), T0 + 1501) == 3
    info = await engine.topic("t")
    assert info is not None and info.count == 0 and info.last_offset == 8


# -- listeners ----------------------------------------------------------------


@bounded()
async def test_listeners_called_once_per_append_in_seq_order(engine: Engine) -> None:
    """Each listener gets one call per append, with its new messages in seq order."""
    one, two = Recorder(), Recorder()
    engine.add_listener(one)
    engine.add_listener(two)
    r1 = await engine.append([req("a"), req("b")], T0)
    r2 = await engine.append([req("a", key="k"), req("a", key="k")], T0)
    assert [[m.seq for m in call] for call in one.calls] == [
        [r.message.seq for r in r1], [r2[0].message.seq]]
    assert one.seqs == two.seqs


@bounded()
async def test_listener_sees_messages_before_the_append_returns(engine: Engine) -> None:
    """When append() returns, its messages were already given to the listeners."""
    rec = Recorder()
    engine.add_listener(rec)
    for i in range(5):
        (r,) = await engine.append([req("t", i)], T0)
        assert rec.seqs[-1] == r.message.seq


@bounded(20)
async def test_listener_order_under_concurrent_appends(engine: Engine) -> None:
    """200 concurrent appends reach listeners in seq order, none missed, none twice."""
    rec = Recorder()
    engine.add_listener(rec)
    results = await asyncio.gather(
        *(engine.append([req(f"t{i % 7}", i)], T0) for i in range(200)))
    seqs = sorted(r.message.seq for (r,) in results)
    assert rec.seqs == seqs == list(range(seqs[0], seqs[0] + 200))
    assert all(call for call in rec.calls)
    assert await engine.head_seq() == seqs[-1]


@bounded(30)
async def test_a_full_topic_keeps_exactly_its_newest_messages(engine: Engine) -> None:
    """Trimmed on every append for thousands of appends, a topic keeps its newest N,
    readable by offset and by seq, with the trim point just before them."""
    for start in range(0, 3000, 100):
        await engine.append(
            [req("full.t", i, max_messages=10) for i in range(start, start + 100)], now=1
        )
    info = await engine.topic("full.t")
    assert info is not None
    assert (info.first_offset, info.last_offset, info.trim_offset) == (2991, 3000, 2990)
    by_offset = await engine.read("full.t", 2994, 100)
    assert [m.offset for m in by_offset] == list(range(2995, 3001))
    by_seq = await engine.read_seq(["full.t"], 0, 100)
    assert [m.offset for m in by_seq] == list(range(2991, 3001))
    assert [m.offset for m in await engine.read("full.t", 0, 1)] == [2991]
