"""What SQLiteEngine promises beyond the contract: durability, reopen, group commit."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import astuple
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.engines import sqlite as sqlite_module
from hubbub.engines import sqlite_writer
from hubbub.engines.base import AppendRequest, EpochInfo, Retention
from hubbub.engines.memory import MemoryEngine
from hubbub.engines.sqlite import SQLiteEngine
from hubbub.protocol.errors import Unavailable
from hubbub.protocol.message import Message

from .conftest import UNIT, bounded, req

T0 = 1_700_000_000_000


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "data" / "hub.db")


@pytest.fixture
async def engine(path: str) -> AsyncIterator[SQLiteEngine]:
    e = SQLiteEngine(path)
    async with asyncio.timeout(10 * UNIT):
        await e.open()
    try:
        yield e
    finally:
        async with asyncio.timeout(10 * UNIT):
            await e.close()


async def reopen(engine: SQLiteEngine, **kw: Any) -> SQLiteEngine:
    await engine.close()
    again = SQLiteEngine(engine.path, **kw)
    await again.open()
    return again


@bounded()
async def test_reopen_keeps_everything(engine: SQLiteEngine) -> None:
    """A reopened store has the same store epoch, topics, epochs, messages, seqs and keys."""
    await engine.append([req("a", 1), req("b", 2, key="k"), req("a", 3)], T0)
    await engine.append([req("a", 4, max_messages=2)], T0 + 1)
    before = (await engine.topics(), await engine.read_seq(None, 0, 100),
              await engine.head_seq(), engine.store_epoch)
    engine = await reopen(engine)
    try:
        after = (await engine.topics(), await engine.read_seq(None, 0, 100),
                 await engine.head_seq(), engine.store_epoch)
        assert after[0] == before[0] and after[2:] == before[2:]
        assert [m.to_json() for m in after[1]] == [m.to_json() for m in before[1]]
        for info in after[0]:
            assert await engine.lookup_epoch(info.epoch) == EpochInfo(info.name, True)
        assert await engine.lookup_epoch(engine.store_epoch) == EpochInfo(None, True)
        (dup,) = await engine.append([req("b", 9, key="k")], T0 + 2)
        assert dup.duplicate and dup.message.data == b"2"
        (nxt,) = await engine.append([req("a", 5)], T0 + 3)
        assert (nxt.message.offset, nxt.message.seq) == (4, before[2] + 1)
    finally:
        await engine.close()


@bounded()
async def test_positions_not_reused_after_trimming_the_newest(engine: SQLiteEngine) -> None:
    """Trimming a topic empty, even its newest message, never lets an offset or seq recur."""
    await engine.append([req("a"), req("a")], T0)
    (last,) = await engine.append([req("b", max_messages=0)], T0)
    assert await engine.trim(lambda _: Retention(max_messages=0), T0) == 2
    engine = await reopen(engine)
    try:
        assert await engine.head_seq() == last.message.seq
        a, b = await engine.append([req("a"), req("b")], T0)
        assert (a.message.offset, b.message.offset) == (3, 2)
        assert a.message.seq == last.message.seq + 1
    finally:
        await engine.close()


@bounded(20)
async def test_group_commit_batches_concurrent_appends(engine: SQLiteEngine) -> None:
    """200 concurrent appends share a handful of transactions, not one each."""
    await engine.append([req("warm")], T0)
    before = engine.commits
    await asyncio.gather(*(engine.append([req(f"t{i % 5}", i)], T0) for i in range(200)))
    assert 1 <= engine.commits - before <= 20


@bounded(20)
async def test_a_failing_append_fails_alone(engine: SQLiteEngine) -> None:
    """In a group, a call that raises stores nothing; the others still commit."""
    before = engine.commits
    other = sqlite3.connect(engine.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # hold the writer at its first group...
    first = asyncio.create_task(engine.append([req("t", 0)], T0))
    await asyncio.sleep(0.05 * UNIT)
    unbindable: Any = object()  # SQLite cannot store it: this call's flush fails
    bad = [req("t", '"bad"'), AppendRequest("t", unbindable, "application/json")]
    calls = [asyncio.create_task(engine.append([req("t", i)], T0)) for i in range(1, 20)]
    calls.insert(10, asyncio.create_task(engine.append(bad, T0)))
    await asyncio.sleep(0)
    other.execute("ROLLBACK")  # ...so that all these calls queue up behind it as one group
    other.close()
    results = await asyncio.gather(first, *calls, return_exceptions=True)
    assert engine.commits - before <= 2
    assert isinstance(results[11], sqlite3.Error)
    good = [r[0].message for r in results if isinstance(r, list)]
    assert len(good) == 20
    stored = await engine.read("t", 0, 100)
    assert [m.offset for m in stored] == list(range(1, 21))
    assert sorted(m.seq for m in good) == [m.seq for m in stored]
    assert b'"bad"' not in [m.data for m in stored]


@bounded(20)
async def test_locked_store_is_unavailable_then_recovers(
    engine: SQLiteEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another process holds the write lock appends raise Unavailable; then work."""
    await engine.close()
    monkeypatch.setattr(sqlite_writer, "BUSY_MS", 50)
    await engine.open()
    await engine.append([req("t")], T0)
    other = sqlite3.connect(engine.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable):
            await engine.append([req("t"), req("u")], T0)
        other.execute("ROLLBACK")
    finally:
        other.close()
    a, u = await engine.append([req("t"), req("u")], T0)
    assert (a.message.offset, u.message.offset) == (2, 1)
    assert a.message.seq == 2


@bounded()
async def test_close_finishes_in_flight_appends(engine: SQLiteEngine) -> None:
    """Appends already submitted when close() is called are committed and answered."""
    tasks = [asyncio.create_task(engine.append([req("t", i)], T0)) for i in range(50)]
    await asyncio.sleep(0)  # let every task submit its append
    await engine.close()
    assert all(t.done() and not t.cancelled() for t in tasks)
    with pytest.raises(Unavailable):
        await engine.append([req("t")], T0)
    engine = await reopen(engine)
    try:
        assert len(await engine.read("t", 0, 100)) == 50
    finally:
        await engine.close()


@bounded()
async def test_open_is_idempotent_and_bad_paths_are_unavailable(
    engine: SQLiteEngine, tmp_path: Path
) -> None:
    """A second open() is harmless; a store that cannot be opened raises Unavailable."""
    epoch = engine.store_epoch
    await engine.open()
    assert engine.store_epoch == epoch and engine.durable
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(Unavailable):
        await SQLiteEngine(str(tmp_path / "dir.db")).open()
    with pytest.raises(ValueError):
        SQLiteEngine(str(tmp_path / "x.db"), synchronous="SOMETIMES")


CRASH_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from hubbub.engines.base import AppendRequest
    from hubbub.engines.sqlite import SQLiteEngine

    async def main():
        engine = SQLiteEngine(sys.argv[1])
        await engine.open()
        for i in range(10**6):
            batch = [AppendRequest("crash", b"%d" % (i * 8 + j), "application/json")
                     for j in range(8)]
            results = await asyncio.gather(*(engine.append([r], i) for r in batch))
            for (r,) in results:
                m = r.message
                print(m.offset, m.seq, m.data.decode(), flush=True)

    asyncio.run(main())
""")


@bounded(30)
async def test_acknowledged_appends_survive_kill_9(path: str) -> None:
    """Every append answered before a SIGKILL is there after reopening, unchanged."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_SCRIPT, path, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    acked: list[tuple[int, int, bytes]] = []
    try:
        while len(acked) < 1000:
            line = await proc.stdout.readline()
            assert line, "the writer process exited early"
            offset, seq, data = line.split()
            acked.append((int(offset), int(seq), data))
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    engine = SQLiteEngine(path)
    await engine.open()
    try:
        stored = {m.offset: (m.offset, m.seq, m.data) for m in await engine.read("crash", 0, 10**6)}
        assert [stored.get(a[0]) for a in acked] == acked
        assert sorted(stored) == list(range(1, len(stored) + 1))
    finally:
        await engine.close()


Op = tuple[str, Any]
ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(st.tuples(
            st.sampled_from(["a", "b", "c.d"]),
            st.none() | st.sampled_from(["k1", "k2"]),
            st.none() | st.integers(0, 4),
        ), min_size=1, max_size=4)),
        st.tuples(st.just("tick"), st.integers(0, 3000)),
        st.tuples(st.just("trim"), st.tuples(st.none() | st.integers(0, 5),
                                              st.none() | st.integers(0, 4000))),
    ),
    max_size=25,
)


def view(m: Message) -> tuple[Any, ...]:
    return (m.topic, m.offset, m.seq, m.time, m.data, m.content_type)


def const(r: Retention) -> Callable[[str], Retention]:
    return lambda _: r


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
async def test_sqlite_engine_behaves_like_memory_engine(ops: list[Op]) -> None:
    """Any mix of appends, keys, retention and trims gives the same results on both."""
    with tempfile.TemporaryDirectory() as tmp:
        model, real = MemoryEngine(key_ttl_ms=2000), SQLiteEngine(f"{tmp}/hub.db", key_ttl_ms=2000)
        async with asyncio.timeout(20 * UNIT):
            await real.open()
            try:
                now, n = T0, 0
                for kind, arg in ops:
                    if kind == "tick":
                        now += arg
                    elif kind == "trim":
                        r = Retention(*arg)
                        assert await real.trim(const(r), now) == await model.trim(const(r), now)
                    else:
                        reqs = []
                        for topic, key, max_messages in arg:
                            n += 1
                            reqs.append(req(topic, n, key=key, max_messages=max_messages))
                        got, want = await real.append(reqs, now), await model.append(reqs, now)
                        assert [(view(r.message), r.duplicate) for r in got] == [
                            (view(r.message), r.duplicate) for r in want]
                assert [view(m) for m in await real.read_seq(None, 0, 1000)] == [
                    view(m) for m in await model.read_seq(None, 0, 1000)]
                assert [astuple(i)[2:] for i in await real.topics()] == [
                    astuple(i)[2:] for i in await model.topics()]
                assert await real.head_seq() == await model.head_seq()
            finally:
                await real.close()


@bounded()
async def test_reads_run_in_place_and_an_overlong_one_goes_to_the_pool(
    engine: SQLiteEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read runs on the loop's thread, with no pool thread involved; one that runs
    past the cap is interrupted there and read again by the pool, with the same
    answer (:mod:`hubbub.engines.sqlite`, trade-off "reads run in place first")."""
    await engine.append([req("t", i) for i in range(300)], T0)
    first = await engine.read("t", 0, 300)
    assert [m.offset for m in first] == list(range(1, 301))
    assert engine._readers == [engine._inline]  # no pool thread opened a connection
    inline = engine._inline
    assert inline is not None
    # It never waits for a lock (a busy read goes to the pool), and never writes.
    assert inline.execute("PRAGMA busy_timeout").fetchone() == (0,)
    assert inline.execute("PRAGMA query_only").fetchone() == (1,)
    monkeypatch.setattr(sqlite_module, "INLINE_MS", 0.0)
    again = await engine.read("t", 0, 300)
    assert [msgspec.structs.astuple(m) for m in again] == [
        msgspec.structs.astuple(m) for m in first]
    assert len(engine._readers) == 2  # a pool thread's connection read it
    assert not inline.in_transaction
    monkeypatch.setattr(sqlite_module, "INLINE_MS", 1000.0)
    assert [m.offset for m in await engine.read("t", 298, 5)] == [299, 300]

