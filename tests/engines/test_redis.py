"""What RedisEngine promises beyond the contract: many nodes, lost links, lost stores.

Most tests use the session's redis-server with a prefix of their own; the
ones that stop, freeze or restart Redis start a server of their own.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import astuple
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings

from hubbub.engines import open_engine, redis_feed
from hubbub.engines.base import EpochInfo, Retention
from hubbub.engines.memory import MemoryEngine
from hubbub.engines.redis import RedisEngine
from hubbub.protocol.errors import HubbubError, Unavailable
from tests.conftest import NO_HIREDIS, RedisServer, free_port, session_redis

from .conftest import UNIT, bounded, req
from .test_contract import Recorder
from .test_sqlite import Op, const, ops, view

T0 = 1_700_000_000_000


def test_redis_py_parses_replies_as_this_run_asks() -> None:
    """``make test`` runs the Redis tests twice: with hiredis, which the
    ``redis`` extra installs, and with ``HUBBUB_TEST_NO_HIREDIS=1``, where
    redis-py parses replies in Python (tests/conftest.py). Each run uses the
    parser it says."""
    import redis.utils

    assert redis.utils.HIREDIS_AVAILABLE is (not NO_HIREDIS)


def new_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


def run_redis(tmp_path: Path, persist: bool) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path, persist=persist).start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)  # in case a test froze it
        server.stop()


# Ask for these before ``nodes``: fixtures are torn down in reverse order, so
# the nodes close while their server still runs.
@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, with an fsync'd append-only file."""
    yield from run_redis(tmp_path, persist=True)


@pytest.fixture
def plain_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own that keeps nothing on disk."""
    yield from run_redis(tmp_path, persist=False)


class Node:
    """An opened engine with a recorder on its listeners and its error listeners."""

    def __init__(self, engine: RedisEngine) -> None:
        self.engine = engine
        self.rec = Recorder()
        self.errors: list[HubbubError] = []
        engine.add_listener(self.rec)
        engine.add_error_listener(self.errors.append)


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    """Open engines ("nodes") on a store; each is closed after the test."""
    opened: list[RedisEngine] = []
    prefix = new_prefix()

    async def make(url: str | None = None, **kw: Any) -> Node:
        engine = RedisEngine(url or session_redis().url, prefix=prefix, **kw)
        await engine.open()
        opened.append(engine)
        return Node(engine)

    yield make
    for engine in opened:
        async with asyncio.timeout(10 * UNIT):
            await engine.close()


async def until(check: Callable[[], bool], units: float = 5) -> None:
    """Wait until ``check()`` holds, at most ``units`` * UNIT seconds."""
    async with asyncio.timeout(units * UNIT):
        while not check():
            await asyncio.sleep(0.01)


async def answers(engine: RedisEngine) -> None:
    """Wait until the engine answers ping() again."""
    async with asyncio.timeout(10 * UNIT):
        while True:
            try:
                return await engine.ping()
            except Unavailable:
                await asyncio.sleep(0.02)


@bounded(20)
@pytest.mark.smoke
async def test_every_node_feeds_every_message_once_in_seq_order(nodes: Any) -> None:
    """Appends on two nodes reach the listeners of both, once each, in seq order,
    and each append returns only after its own node's listeners had it."""
    a, b = await nodes(), await nodes()

    async def publish(node: Node, i: int) -> int:
        (r,) = await node.engine.append([req(f"t{i % 3}", i)], T0)
        assert r.message.seq in node.rec.seqs
        return r.message.seq

    seqs = await asyncio.gather(*(publish(a if i % 2 else b, i) for i in range(200)))
    assert sorted(seqs) == list(range(1, 201))
    await until(lambda: len(a.rec.seqs) == len(b.rec.seqs) == 200)
    assert a.rec.seqs == b.rec.seqs == list(range(1, 201))
    assert a.errors == b.errors == []


@bounded(20)
async def test_concurrent_appends_share_a_few_scripts(nodes: Any) -> None:
    """200 concurrent appends on one node run as a handful of scripts, not 200."""
    a = await nodes()
    await a.engine.append([req("warm")], T0)
    before = a.engine.groups
    await asyncio.gather(*(a.engine.append([req(f"t{i % 5}", i)], T0) for i in range(200)))
    assert 1 <= a.engine.groups - before <= 20


async def connections_received(url: str) -> int:
    """How many connections the Redis server at ``url`` has taken so far."""
    async with aioredis.Redis.from_url(url) as r:
        return int((await r.info("stats"))["total_connections_received"])


@bounded(20)
async def test_the_reads_of_a_loop_pass_go_together(nodes: Any) -> None:
    """Invariant "each its own answer" of hubbub.engines.redis_batch: 600 reads
    asked for at once go as pipelines of MAX_BATCH, on a connection each
    (not one connection of the pool per read), and each caller gets its own
    answer, one caller's error included (a key of the wrong type)."""
    from hubbub.engines import redis_batch

    node = await nodes()
    engine = node.engine
    for i in range(3):
        await engine.append([req(f"b{i}", i)], T0)
    async with aioredis.Redis.from_url(session_redis().url) as r:
        await r.set(f"{engine.prefix}:t:broken", "not a hash")
    await engine.ping()  # the pool has a connection already
    names = [f"b{i % 4}" for i in range(599)] + ["broken"]
    before = await connections_received(session_redis().url)
    answers = await asyncio.gather(*(engine.topic(n) for n in names), return_exceptions=True)
    made = await connections_received(session_redis().url) - before
    # Three pipelines at most at once, one of them on the pool's connection.
    assert made <= -(-len(names) // redis_batch.MAX_BATCH)
    broken = answers.pop()
    assert isinstance(broken, aioredis.ResponseError) and "WRONGTYPE" in str(broken)
    for name, info in zip(names[:-1], answers, strict=True):
        if name == "b3":
            assert info is None
        else:
            assert info is not None and not isinstance(info, BaseException)
            assert (info.name, info.last_offset) == (name, 1)


async def test_a_pipeline_that_cannot_be_sent_fails_each_of_its_callers() -> None:
    """Invariant "each its own answer": every command of a pipeline that never
    reached Redis (nothing listens on the port) fails with Unavailable, as a
    single command does, and no caller is left waiting."""
    from hubbub.engines.redis_batch import Batcher

    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0",
                                     socket_connect_timeout=UNIT)
    try:
        batcher = Batcher(client)
        calls = [batcher.call(lambda r, i=i: r.get(f"k{i}")) for i in range(5)]
        async with asyncio.timeout(5 * UNIT):
            failed = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(e, Unavailable) for e in failed), failed
        alone = batcher.call(lambda r: r.get("k"))  # and a command alone in its pass
        async with asyncio.timeout(5 * UNIT):
            with pytest.raises(Unavailable):
                await alone
    finally:
        await client.aclose()


async def test_a_script_flushed_before_it_ran_runs_alone(plain_redis: RedisServer) -> None:
    """Invariant "a flushed script runs alone": a script whose pipeline flushed
    the scripts before it (Redis answers NOSCRIPT without running it) is sent
    again alone and answers; the command that flushed answers too. (A server of
    its own: the flush empties the server's script cache.)"""
    from hubbub.engines.redis_batch import Batcher

    client = aioredis.Redis.from_url(plain_redis.url)
    try:
        script = client.register_script("return ARGV[1] .. '!'")
        batcher = Batcher(client)
        flushed = batcher.call(lambda r: r.script_flush())
        ran = batcher.call(lambda r: script(args=["hi"], client=r))
        async with asyncio.timeout(5 * UNIT):
            assert await flushed is True
            assert await ran == b"hi!"
    finally:
        await client.aclose()


@bounded(20)
async def test_a_caller_that_leaves_does_not_take_the_others_along(nodes: Any) -> None:
    """Invariant "runs to its end": callers cancelled while their pipeline is
    out leave the other callers of the same pipeline their answers."""
    node = await nodes()
    await node.engine.append([req("stay")], T0)
    callers = [asyncio.ensure_future(node.engine.topic("stay")) for _ in range(20)]
    await asyncio.sleep(0)  # the commands are asked for (this pass: one pipeline)
    for leaving in callers[::2]:
        leaving.cancel()
    async with asyncio.timeout(5 * UNIT):
        done = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(d, asyncio.CancelledError) for d in done[::2])
    assert all(info is not None and info.name == "stay" for info in done[1::2])  # type: ignore[union-attr]
    assert (await node.engine.topic("stay")) is not None  # the pool is whole


async def test_a_cancelled_call_is_cancelled(nodes: Any) -> None:
    """Cancelling a task inside an engine call ends it with CancelledError.

    A websocket's unsub or close cancels a pump that may be inside a claim;
    a client library that completed the command and swallowed the cancel
    (redis-py 8.0 to 8.2 do) would leave that pump running forever.
    """
    node = await nodes()
    for delay in (0, 0.0001, 0.0005):
        started = asyncio.Event()

        async def forever(started: asyncio.Event) -> None:
            while True:
                started.set()
                await node.engine.head_seq()

        task = asyncio.create_task(forever(started))
        await started.wait()
        await asyncio.sleep(delay)
        task.cancel()
        async with asyncio.timeout(5 * UNIT):
            with pytest.raises(asyncio.CancelledError):
                await task


@bounded()
async def test_reopen_keeps_everything(nodes: Any) -> None:
    """Another engine on the same store sees the same epochs, messages, seqs and keys."""
    a = await nodes()
    await a.engine.append([req("a", 1), req("b", 2, key="k"), req("a", 3)], T0)
    await a.engine.append([req("a", 4, max_messages=2)], T0 + 1)
    b = await nodes()
    assert b.engine.store_epoch == a.engine.store_epoch
    assert await b.engine.topics() == await a.engine.topics()
    assert [m.to_json() for m in await b.engine.read_seq(None, 0, 100)] == [
        m.to_json() for m in await a.engine.read_seq(None, 0, 100)]
    for info in await b.engine.topics():
        assert await b.engine.lookup_epoch(info.epoch) == EpochInfo(info.name, True)
    (dup,) = await b.engine.append([req("b", 9, key="k")], T0 + 2)
    assert dup.duplicate and dup.message.data == b"2"


@bounded(20)
async def test_lost_fanout_link_is_told_and_filled_from_the_streams(
    nodes: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a node loses its pub/sub link it tells its error listeners and fails
    ping(); appends still store; once back it feeds every missed message, in order."""
    monkeypatch.setattr(redis_feed, "_BACKOFF", (0.5, 2.0))
    a, b = await nodes(), await nodes()
    await a.engine.append([req("t", 0)], T0)
    async with aioredis.Redis.from_url(session_redis().url) as r:
        await r.client_kill_filter(_id=await pubsub_client_id(r, a.engine))
    await until(lambda: bool(a.errors))
    assert isinstance(a.errors[0], Unavailable) and b.errors == []
    with pytest.raises(Unavailable):
        await a.engine.ping()
    # While a reconnects, b and a itself append: a's append is answered (stored).
    for i in range(1, 4):
        await b.engine.append([req("t", i)], T0)
    (mine,) = await a.engine.append([req("u", 4)], T0)
    await answers(a.engine)
    await until(lambda: a.rec.seqs[-1:] == [mine.message.seq])
    assert a.rec.seqs == b.rec.seqs == [1, 2, 3, 4, 5]
    assert [m.data for call in a.rec.calls for m in call] == [b"0", b"1", b"2", b"3", b"4"]


async def pubsub_client_id(r: aioredis.Redis, engine: RedisEngine) -> int:
    """The id of ``engine``'s fan-out connection (it is named after the node)."""
    for client in await r.client_list(_type="pubsub"):
        if client["name"] == engine.node:
            return int(client["id"])
    raise AssertionError("no fan-out connection")


@bounded(30)
async def test_redis_down_is_unavailable_then_recovers(
    own_redis: RedisServer, nodes: Any
) -> None:
    """While Redis is down appends, reads and ping() raise Unavailable and the error
    listeners are told; when it is back everything works again with no restart."""
    a = await nodes(own_redis.url, heartbeat=0.2, timeout=1)
    (first,) = await a.engine.append([req("t", 1)], T0)
    epoch = a.engine.store_epoch
    own_redis.stop(signal.SIGKILL)
    await until(lambda: bool(a.errors))
    for call in (a.engine.append([req("t", 2)], T0), a.engine.ping(),
                 a.engine.read("t", 0, 10), a.engine.topics()):
        with pytest.raises(Unavailable):
            await call
    own_redis.start()  # the append-only file brings the store back as it was
    await answers(a.engine)
    (second,) = await a.engine.append([req("t", 3)], T0)
    assert a.engine.store_epoch == epoch
    assert (second.message.offset, second.message.seq) == (2, first.message.seq + 1)
    await until(lambda: a.rec.seqs == [1, 2])


@bounded(30)
async def test_a_lost_store_is_a_new_store(plain_redis: RedisServer, nodes: Any) -> None:
    """Redis restarted with nothing kept: the node tells, takes the new store epoch,
    and the old epochs are unknown (so the core reports gaps to old cursors)."""
    a = await nodes(plain_redis.url, heartbeat=0.2, timeout=1)
    old, _ = await a.engine.append([req("t", 1), req("t", 2)], T0)
    before = a.engine.store_epoch
    plain_redis.stop(signal.SIGKILL)
    plain_redis.start()
    await answers(a.engine)
    assert a.engine.store_epoch != before and a.errors
    assert await a.engine.lookup_epoch(old.message.epoch) is None
    assert await a.engine.lookup_epoch(before) is None
    (new,) = await a.engine.append([req("t", 3)], T0)
    assert (new.message.offset, new.message.seq) == (1, 1)
    assert new.message.epoch != old.message.epoch
    await until(lambda: a.rec.seqs[-1:] == [1])


@bounded(30)
async def test_a_flushed_store_is_noticed_on_the_fanout(
    plain_redis: RedisServer, nodes: Any
) -> None:
    """A store flushed under a live link is noticed by the store epoch in the fan-out."""
    a, b = await nodes(plain_redis.url), await nodes(plain_redis.url)
    await a.engine.append([req("t", 1), req("t", 2)], T0)
    async with aioredis.Redis.from_url(plain_redis.url) as r:
        await r.flushdb()
    (new,) = await b.engine.append([req("t", 3)], T0)
    await until(lambda: bool(a.errors) and a.rec.seqs[-1:] == [1])
    assert a.engine.store_epoch == b.engine.store_epoch != ""
    assert new.message.seq == 1 and b.rec.seqs[-1] == 1


@bounded(30)
async def test_a_frozen_redis_is_noticed_by_the_heartbeat(
    own_redis: RedisServer, nodes: Any
) -> None:
    """A Redis that stops answering (SIGSTOP) is taken for down within two heartbeats."""
    a = await nodes(own_redis.url, heartbeat=0.2, timeout=0.5)
    assert own_redis.proc is not None
    own_redis.proc.send_signal(signal.SIGSTOP)
    try:
        await until(lambda: bool(a.errors))
        with pytest.raises(Unavailable):
            await a.engine.append([req("t")], T0)
    finally:
        own_redis.proc.send_signal(signal.SIGCONT)
    await answers(a.engine)
    (r,) = await a.engine.append([req("t")], T0)
    await until(lambda: a.rec.seqs[-1:] == [r.message.seq])


@bounded(20)
async def test_a_full_redis_refuses_appends_whole(plain_redis: RedisServer, nodes: Any) -> None:
    """Redis out of memory: an append raises Unavailable and stores nothing of itself."""
    a = await nodes(plain_redis.url)
    await a.engine.append([req("t", 1)], T0)
    async with aioredis.Redis.from_url(plain_redis.url) as r:
        await r.config_set("maxmemory", 1)
        try:
            with pytest.raises(Unavailable):
                await a.engine.append([req("t", 2), req("u", 3)], T0)
        finally:
            await r.config_set("maxmemory", 0)
    assert [m.offset for m in await a.engine.read_seq(None, 0, 10)] == [1]
    assert await a.engine.head_seq() == 1 and await a.engine.topic("u") is None
    (r2,) = await a.engine.append([req("t", 4)], T0)
    assert (r2.message.offset, r2.message.seq) == (2, 2)


@bounded()
async def test_unreachable_store_does_not_open() -> None:
    """open() on a Redis that is not there raises Unavailable."""
    from tests.conftest import free_port

    engine = RedisEngine(f"redis://127.0.0.1:{free_port()}/0", timeout=1)
    with pytest.raises(Unavailable):
        await engine.open()
    with pytest.raises(Unavailable):
        await engine.append([req("t")], T0)


def test_store_urls() -> None:
    """redis:// URLs take ?prefix=; other query arguments go to redis-py."""
    e = open_engine("redis://127.0.0.1:1/2?prefix=app1&socket_keepalive=true")
    assert isinstance(e, RedisEngine)
    assert (e.prefix, e.url) == ("app1", "redis://127.0.0.1:1/2?socket_keepalive=true")
    e = open_engine("rediss://h:1")
    assert isinstance(e, RedisEngine) and e.prefix == "hubbub"
    with pytest.raises(ValueError):
        open_engine("redis://h:1/0?prefix=")


CRASH_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from hubbub.engines.base import AppendRequest
    from hubbub.engines.redis import RedisEngine

    async def main():
        engine = RedisEngine(sys.argv[1], prefix=sys.argv[2])
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


async def acked_until_killed(argv: list[str], count: int,
                             kill: Callable[[], None] | None = None) -> list[tuple[int, ...]]:
    """Run CRASH_SCRIPT, read ``count`` acknowledged appends, then kill (the script,
    or with ``kill`` something else first) and return what was acknowledged."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_SCRIPT, *argv, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    acked: list[tuple[int, ...]] = []
    try:
        while len(acked) < count:
            line = await proc.stdout.readline()
            assert line, "the writer process exited early"
            acked.append(tuple(int(x) for x in line.split()))
        if kill is not None:
            kill()
            while line := await proc.stdout.readline():  # answers until it noticed
                if line[:1].isdigit():
                    acked.append(tuple(int(x) for x in line.split()))
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    return acked


async def stored(url: str, prefix: str) -> dict[int, tuple[int, ...]]:
    engine = RedisEngine(url, prefix=prefix)
    await engine.open()
    try:
        return {m.offset: (m.offset, m.seq, int(m.data))
                for m in await engine.read("crash", 0, 10**6)}
    finally:
        await engine.close()


@bounded(30)
async def test_acknowledged_appends_survive_kill_9_of_the_node() -> None:
    """Every append answered before the node's SIGKILL is in Redis, unchanged."""
    prefix = new_prefix()
    acked = await acked_until_killed([session_redis().url, prefix], 1000)
    found = await stored(session_redis().url, prefix)
    assert [found.get(a[0]) for a in acked] == acked
    assert sorted(found) == list(range(1, len(found) + 1))


@pytest.mark.slow
@bounded(60)
async def test_acknowledged_appends_survive_kill_9_of_redis(own_redis: RedisServer) -> None:
    """With appendfsync always, every append answered before Redis's SIGKILL is kept."""
    prefix = new_prefix()
    acked = await acked_until_killed([own_redis.url, prefix], 500,
                                     kill=lambda: own_redis.stop(signal.SIGKILL))
    own_redis.start()
    found = await stored(own_redis.url, prefix)
    assert [found.get(a[0]) for a in acked] == acked
    assert sorted(found) == list(range(1, len(found) + 1))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=ops)
async def test_redis_engine_behaves_like_memory_engine(ops: list[Op]) -> None:
    """Any mix of appends, keys, retention and trims gives the same results on both."""
    model = MemoryEngine(key_ttl_ms=2000)
    real = RedisEngine(session_redis().url, prefix=new_prefix(), key_ttl_ms=2000)
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
            for after in (0, 3, 7):
                for names in (["a"], ["a", "c.d"], ["b", "c.d", "a"]):
                    assert [view(m) for m in await real.read_seq(names, after, 4)] == [
                        view(m) for m in await model.read_seq(names, after, 4)]
            assert [astuple(i)[2:] for i in await real.topics()] == [
                astuple(i)[2:] for i in await model.topics()]
            assert await real.head_seq() == await model.head_seq()
        finally:
            await real.close()
