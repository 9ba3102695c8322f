"""The consumer-group part of the Engine contract (``group``, ``create_group``,
``claim``, ``settle``), run against every engine.

The rules are :mod:`hubbub.protocol.leases`'s; the memory engine is the reference, and
a seeded random run (8 seeds of 250 operations) checks that SQLite gives the
same answers, step by step. The last tests are SQLite's own: a group survives a reopen and a
``kill -9`` as its last commit left it.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from hubbub.engines.base import AppendRequest, Claim, Engine, GroupInfo, Lease, Retention
from hubbub.engines.memory import MemoryEngine
from hubbub.engines.sqlite import SQLiteEngine
from hubbub.protocol.errors import NotFound
from hubbub.protocol.leases import Outcome, dead_letter_topic, parse_lease_id
from hubbub.protocol.message import Message

from .conftest import UNIT, bounded, req

T0 = 1_700_000_000_000
LEASE = 1000
MAX_DELIVER = 3
OK, EXPIRED, UNKNOWN = Outcome.OK, Outcome.EXPIRED, Outcome.UNKNOWN


@pytest.fixture
async def engine(engine: Engine) -> Engine:
    """Every engine of the contract suite, with group "g" on "t"."""
    await engine.create_group("g", ["t"], 0, T0)
    return engine


async def fill(engine: Engine, topic: str, n: int, now: int = T0) -> list[Message]:
    results = await engine.append([req(topic, i) for i in range(n)], now)
    return [r.message for r in results]


async def claim(
    engine: Engine, *, max_messages: int = 10, now: int = T0, lease_ms: int = LEASE,
    topics: Sequence[str] = ("t",), horizon: int | None = None, max_deliver: int = MAX_DELIVER,
) -> Claim:
    """Claim for group "g", by default every new message of "t" up to the head."""
    if horizon is None:
        horizon = await engine.head_seq()
    return await engine.claim(
        "g", list(topics), horizon, max_messages, lease_ms, max_deliver, now)


def seqs(leases: Sequence[Lease]) -> list[int]:
    return [lease.message.seq for lease in leases]


async def info(engine: Engine, name: str = "g") -> GroupInfo:
    g = await engine.group(name)
    assert g is not None
    return g


# -- creating -----------------------------------------------------------------


@bounded()
async def test_create_group_is_idempotent_and_returns_what_is_stored(engine: Engine) -> None:
    """A second create_group changes nothing and answers the stored patterns and start."""
    first = await engine.create_group("h", ["a.*", "b"], 7, T0 + 1)
    assert first == GroupInfo("h", ("a.*", "b"), 7, 0, T0 + 1)
    again = await engine.create_group("h", ["other"], 99, T0 + 2)
    assert again == first == await engine.group("h")
    assert await engine.group("nope") is None


# -- new messages -------------------------------------------------------------


@bounded()
async def test_delete_group_forgets_position_and_pending_entries(engine: Engine) -> None:
    """A deleted group is gone with its leases; created again, it starts afresh."""
    await fill(engine, "t", 2)
    lease = (await claim(engine, max_messages=1)).leases[0]
    assert await engine.delete_group("g") is True
    assert await engine.group("g") is None
    assert await engine.delete_group("g") is False
    with pytest.raises(NotFound):
        await engine.settle("g", [lease.lease_id], "ack", T0)
    await engine.create_group("g", ["t"], 0, T0)
    info = await engine.group("g")
    assert info is not None and info.pending == 0 and info.delivered_seq == 0
    assert len((await claim(engine)).leases) == 2


async def test_claim_leases_new_messages_in_seq_order_up_to_max(engine: Engine) -> None:
    """New messages are leased in seq order, at most max, on attempt 1, each with its id."""
    msgs = await fill(engine, "t", 5)
    first = await claim(engine, max_messages=3, now=T0 + 5)
    assert seqs(first.leases) == [m.seq for m in msgs[:3]]
    for lease in first.leases:
        assert (lease.attempts, lease.deadline) == (1, T0 + 5 + LEASE)
        assert parse_lease_id(lease.lease_id) == lease.message.seq
        assert lease.message.data == msgs[lease.message.offset - 1].data
    assert first.dead == [] and first.next_due == T0 + 5 + LEASE
    assert await info(engine) == GroupInfo("g", ("t",), msgs[2].seq, 3, T0)
    rest = await claim(engine, max_messages=3)
    assert seqs(rest.leases) == [m.seq for m in msgs[3:]]
    assert len({lease.lease_id for lease in first.leases + rest.leases}) == 5
    assert (await claim(engine)).leases == []


@bounded()
async def test_claim_stops_at_the_horizon_and_advances_to_it(engine: Engine) -> None:
    """Only messages up to the horizon are leased; with fewer found, delivered_seq
    moves to the horizon, so other topics' seqs are not scanned again."""
    msgs = await fill(engine, "t", 4)
    part = await claim(engine, horizon=msgs[1].seq)
    assert seqs(part.leases) == [msgs[0].seq, msgs[1].seq]
    assert (await info(engine)).delivered_seq == msgs[1].seq
    others = await fill(engine, "x", 3)
    rest = await claim(engine)
    assert seqs(rest.leases) == [msgs[2].seq, msgs[3].seq]
    assert (await info(engine)).delivered_seq == others[-1].seq
    assert (await claim(engine, horizon=0)).leases == []
    assert (await info(engine)).delivered_seq == others[-1].seq


@bounded()
async def test_claim_takes_only_the_given_topics(engine: Engine) -> None:
    """Messages of topics not named in the claim are not leased."""
    await engine.append([req("t", 1), req("u", 2), req("t", 3), req("v", 4)], T0)
    got = await claim(engine, topics=["t", "v", "t", "missing"])
    assert [(lease.message.topic, lease.message.data) for lease in got.leases] == [
        ("t", b"1"), ("t", b"3"), ("v", b"4")]
    assert (await info(engine)).pending == 3


@bounded(20)
async def test_concurrent_claims_never_lease_a_message_twice(engine: Engine) -> None:
    """20 claims at once on one group split the messages: each is leased exactly once."""
    msgs = await fill(engine, "t", 30)
    claims = await asyncio.gather(*(claim(engine, max_messages=2) for _ in range(20)))
    got = [s for c in claims for s in seqs(c.leases)]
    assert sorted(got) == [m.seq for m in msgs]
    assert (await info(engine)).pending == 30


# -- due entries and dead letters ---------------------------------------------


@bounded()
async def test_due_entries_come_first_with_a_new_attempt_and_lease_id(engine: Engine) -> None:
    """Nacked entries whose delay passed and entries whose lease ran out are leased
    again before new messages, oldest seq first, on their next attempt, with a new id."""
    m1, m2 = await fill(engine, "t", 2)
    a1, a2 = (await claim(engine, now=T0)).leases
    assert await engine.settle("g", [a2.lease_id], "nack", T0, delay_ms=100) == [OK]
    m3, m4 = await fill(engine, "t", 2)
    assert (await claim(engine, now=T0 + 99, max_messages=1)).leases[0].message.seq == m3.seq
    again = await claim(engine, now=T0 + 100, max_messages=1)
    (b2,) = again.leases
    assert (b2.message.seq, b2.attempts, b2.deadline) == (m2.seq, 2, T0 + 100 + LEASE)
    assert b2.lease_id != a2.lease_id
    late = await claim(engine, now=T0 + LEASE, max_messages=5)
    assert [(lease.message.seq, lease.attempts) for lease in late.leases] == [
        (m1.seq, 2), (m4.seq, 1)]
    assert await engine.settle("g", [a1.lease_id], "ack", T0 + LEASE) == [EXPIRED]


@bounded()
async def test_due_entries_go_by_seq_not_by_deadline(engine: Engine) -> None:
    """Of the due entries, the oldest message comes first, whichever was due first."""
    m1, m2, m3 = await fill(engine, "t", 3)
    a1, a2, a3 = (await claim(engine)).leases
    await engine.settle("g", [a3.lease_id, a2.lease_id], "nack", T0)
    await engine.settle("g", [a1.lease_id], "nack", T0, delay_ms=50)
    assert seqs((await claim(engine, now=T0 + 50)).leases) == [m1.seq, m2.seq, m3.seq]


@bounded()
async def test_exhausted_entries_go_to_the_dead_letter_topic(engine: Engine) -> None:
    """An entry delivered max_deliver times is removed and its message appended to
    dlq.<group> with its attempts and last error, seen by the listeners like any append."""
    calls: list[list[Message]] = []
    engine.add_listener(lambda batch: calls.append(list(batch)))
    (j,) = await fill(engine, "t", 1)
    (b,) = [r.message for r in await engine.append([AppendRequest("t", b"\x00\xff", "a/b")], T0)]
    now = T0
    for attempt in range(1, MAX_DELIVER + 1):
        got = await claim(engine, now=now)
        assert [(lease.message.seq, lease.attempts) for lease in got.leases] == [
            (j.seq, attempt), (b.seq, attempt)]
        ids = [lease.lease_id for lease in got.leases]
        assert await engine.settle("g", ids, "nack", now, error=f"boom {attempt}") == [OK, OK]
        now += 1
    calls.clear()
    last = await claim(engine, now=now)
    assert last.leases == [] and last.next_due is None and (await info(engine)).pending == 0
    dead = [r.message for r in last.dead]
    assert [m.topic for m in dead] == [dead_letter_topic("g")] * 2
    stored = await engine.read(dead_letter_topic("g"), 0, 10)
    assert [m.to_json() for m in stored] == [m.to_json() for m in dead]
    assert [m.seq for call in calls for m in call] == [m.seq for m in dead]
    assert dead[0].seq > b.seq and dead[1].seq == dead[0].seq + 1
    assert await engine.head_seq() == dead[1].seq
    first, second = (json.loads(m.data) for m in dead)
    assert first == {"group": "g", "topic": "t", "offset": j.offset, "cursor": j.cursor,
                     "id": j.id, "time": j.time, "attempts": MAX_DELIVER,
                     "error": f"boom {MAX_DELIVER}", "data": 0}
    assert (second["content_type"], second["data"], second["attempts"]) == (
        "a/b", "AP8=", MAX_DELIVER)


@bounded()
async def test_entries_whose_message_was_trimmed_are_dropped(engine: Engine) -> None:
    """A due entry whose message retention removed is dropped, neither leased nor dead."""
    msgs = await fill(engine, "t", 3)
    ids = [lease.lease_id for lease in (await claim(engine)).leases]
    await engine.settle("g", ids, "nack", T0)
    assert await engine.trim(lambda _: Retention(max_messages=1), T0) == 2
    got = await claim(engine, now=T0 + 1, max_messages=1)
    assert [(x.message.seq, x.attempts) for x in got.leases] == [(msgs[2].seq, 2)]
    assert got.dead == [] and (await info(engine)).pending == 1


@bounded()
async def test_next_due_is_the_earliest_pending_deadline(engine: Engine) -> None:
    """next_due is the earliest deadline of the group's entries, None when none is left."""
    await fill(engine, "t", 2)
    (a,) = (await claim(engine, max_messages=1, lease_ms=1000)).leases
    c = await claim(engine, max_messages=1, lease_ms=500)
    assert c.next_due == T0 + 500
    await engine.settle("g", [c.leases[0].lease_id], "nack", T0, delay_ms=2000)
    assert (await claim(engine)).next_due == T0 + 1000
    await engine.settle("g", [a.lease_id], "ack", T0)
    assert (await claim(engine)).next_due == T0 + 2000
    (d,) = (await claim(engine, now=T0 + 2000)).leases
    await engine.settle("g", [d.lease_id], "ack", T0 + 2000)
    assert (await claim(engine, now=T0 + 2000)).next_due is None


# -- settling -----------------------------------------------------------------


@bounded()
async def test_ack_removes_the_entry_once(engine: Engine) -> None:
    """An ack removes the entry; acking it again, or an id never given, is unknown."""
    await fill(engine, "t", 2)
    a, b = (await claim(engine)).leases
    assert await engine.settle("g", [a.lease_id], "ack", T0) == [OK]
    assert (await info(engine)).pending == 1
    never = f"{b.message.seq + 100}.0123456789ab"
    assert await engine.settle("g", [a.lease_id, never, b.lease_id, b.lease_id], "ack", T0) == [
        UNKNOWN, UNKNOWN, OK, UNKNOWN]
    assert (await info(engine)).pending == 0
    assert (await claim(engine, now=T0 + 10 * LEASE)).leases == []


@bounded()
async def test_a_replaced_lease_id_is_expired(engine: Engine) -> None:
    """After the lease ran out and the entry was leased again, the old id settles nothing."""
    await fill(engine, "t", 1)
    (old,) = (await claim(engine)).leases
    (new,) = (await claim(engine, now=T0 + LEASE)).leases
    for action in ("ack", "nack", "extend"):
        assert await engine.settle("g", [old.lease_id], action, T0 + LEASE) == [EXPIRED]
    assert (await claim(engine, now=T0 + 2 * LEASE - 1)).leases == []
    assert await engine.settle("g", [new.lease_id], "ack", T0 + LEASE) == [OK]


@bounded()
async def test_ack_after_the_deadline_is_ok_until_someone_else_takes_it(engine: Engine) -> None:
    """A lease that ran out still settles while nobody has taken the entry since."""
    await fill(engine, "t", 2)
    a, b = (await claim(engine)).leases
    assert await engine.settle("g", [a.lease_id], "ack", T0 + 5 * LEASE) == [OK]
    assert await engine.settle("g", [b.lease_id], "extend", T0 + 5 * LEASE,
                               lease_ms=LEASE) == [OK]
    assert (await claim(engine, now=T0 + 6 * LEASE - 1)).leases == []
    assert seqs((await claim(engine, now=T0 + 6 * LEASE)).leases) == [b.message.seq]


@bounded()
async def test_nack_sets_the_error_and_the_delay(engine: Engine) -> None:
    """A nack makes the entry due after the delay and remembers the error; its id is spent."""
    await fill(engine, "t", 1)
    (a,) = (await claim(engine)).leases
    assert await engine.settle("g", [a.lease_id], "nack", T0 + 10, delay_ms=500,
                               error="no") == [OK]
    assert await engine.settle("g", [a.lease_id], "ack", T0 + 10) == [EXPIRED]
    early = await claim(engine, now=T0 + 509)
    assert early.leases == [] and early.next_due == T0 + 510
    (b,) = (await claim(engine, now=T0 + 510, max_deliver=2)).leases
    assert b.attempts == 2
    later = await claim(engine, now=T0 + 510 + LEASE, max_deliver=2)
    assert [json.loads(r.message.data)["error"] for r in later.dead] == ["no"]


@bounded()
async def test_extend_moves_the_deadline(engine: Engine) -> None:
    """An extend sets the deadline to now + lease_ms; the entry is not due before it."""
    await fill(engine, "t", 1)
    (a,) = (await claim(engine)).leases
    assert await engine.settle("g", [a.lease_id], "extend", T0 + 500, lease_ms=5000) == [OK]
    held = await claim(engine, now=T0 + LEASE)
    assert held.leases == [] and held.next_due == T0 + 5500
    (b,) = (await claim(engine, now=T0 + 5500)).leases
    assert (b.message.seq, b.attempts) == (a.message.seq, 2)


@bounded()
async def test_unknown_group_is_not_found(engine: Engine) -> None:
    """claim and settle on a group never created raise NotFound and change nothing."""
    await fill(engine, "t", 1)
    with pytest.raises(NotFound):
        await engine.claim("nope", ["t"], 1, 1, LEASE, MAX_DELIVER, T0)
    with pytest.raises(NotFound):
        await engine.settle("nope", ["1.0123456789ab"], "ack", T0)
    assert await engine.group("nope") is None
    assert len((await claim(engine)).leases) == 1


# -- SQLite and memory agree --------------------------------------------------


Op = tuple[Any, ...]


def random_ops(rng: random.Random, n: int) -> list[Op]:
    """Appends, claims, settles, time and trims, mixed so that runs reach expired
    leases, repeated attempts, trimmed entries and dead letters."""
    out: list[Op] = []
    for _ in range(n):
        k = rng.random()
        if k < 0.3:
            out.append(("append", rng.choice("abc"), rng.choice([None, None, None, 1, 2, 3])))
        elif k < 0.55:
            out.append(("claim", rng.choice([["a"], ["a", "b"], ["a", "b", "c"]]),
                        rng.randint(1, 4), rng.choice([10, 100]), rng.choice([0, 0, 0, 1, 2])))
        elif k < 0.8:
            out.append(("settle", rng.choice(["ack", "nack", "extend"]),
                        [rng.randrange(12) for _ in range(rng.randint(1, 3))], rng.randint(0, 100)))
        elif k < 0.95:
            out.append(("tick", rng.randint(0, 60)))
        else:
            out.append(("trim", rng.randint(0, 3)))
    return out


def keep_last(n: int) -> Callable[[str], Retention]:
    """Retention of every topic: its last ``n`` messages."""
    return lambda _: Retention(max_messages=n)


def claimed(c: Claim) -> tuple[Any, ...]:
    """A claim without what differs between stores (random ids, epochs)."""
    dead = []
    for r in c.dead:
        body = json.loads(r.message.data)
        del body["id"], body["cursor"]
        dead.append((r.message.topic, r.message.offset, r.message.seq, body))
    leases = [(x.message.topic, x.message.offset, x.message.seq, x.message.data, x.attempts,
               x.deadline) for x in c.leases]
    return leases, dead, c.next_due


@pytest.mark.parametrize("seed", range(8))
@bounded(30)
async def test_sqlite_groups_behave_like_memory_groups(seed: int, tmp_path: Path) -> None:
    """Any mix of appends, claims, settles, time and trims gives the same answers on
    SQLite as on the memory engine (the reference), step by step."""
    model, real = MemoryEngine(), SQLiteEngine(str(tmp_path / "hub.db"))
    await real.open()
    try:
        engines: list[Engine] = [model, real]
        issued: list[list[str]] = [[], []]  # each engine's lease ids, in claim order
        for e in engines:
            await e.create_group("g", ["*"], 0, T0)
        now, n = T0, 0
        for op in random_ops(random.Random(seed), 250):
            if op[0] == "tick":
                now += op[1]
            elif op[0] == "append":
                n += 1
                for e in engines:
                    await e.append([req(op[1], n, max_messages=op[2])], now)
            elif op[0] == "trim":
                keep = keep_last(op[1])
                assert await real.trim(keep, now) == await model.trim(keep, now)
            elif op[0] == "claim":
                _, topics, max_messages, lease_ms, back = op
                horizon = max(0, await model.head_seq() - back)
                got = [await e.claim("g", topics, horizon, max_messages, lease_ms, 2, now)
                       for e in engines]
                assert claimed(got[1]) == claimed(got[0]), op
                for ids, c in zip(issued, got, strict=True):
                    ids += [x.lease_id for x in c.leases]
            elif issued[0]:  # settle some of the latest leases
                _, action, picks, ms = op
                outcomes = [await e.settle(
                    "g", [ids[-1 - i % len(ids)] for i in picks], action, now,
                    delay_ms=ms, lease_ms=ms, error=f"e{ms}",
                ) for e, ids in zip(engines, issued, strict=True)]
                assert outcomes[1] == outcomes[0], op
            assert await real.group("g") == await model.group("g")
            assert await real.head_seq() == await model.head_seq()
    finally:
        await real.close()


# -- SQLite: groups are durable -----------------------------------------------


@bounded()
async def test_sqlite_groups_survive_reopen(tmp_path: Path) -> None:
    """After close and reopen a group has its position, entries, attempts, lease ids,
    deadlines and last errors."""
    path = str(tmp_path / "hub.db")
    engine = SQLiteEngine(path)
    await engine.open()
    try:
        await engine.create_group("g", ["t", "u"], 0, T0)
        msgs = await fill(engine, "t", 4)
        a, b, c = (await claim(engine, max_messages=3)).leases
        await engine.settle("g", [a.lease_id], "ack", T0)
        await engine.settle("g", [b.lease_id], "nack", T0, delay_ms=500, error="boom")
        before = await info(engine)
        await engine.close()
        engine = SQLiteEngine(path)
        await engine.open()
        assert await info(engine) == before == GroupInfo("g", ("t", "u"), msgs[2].seq, 2, T0)
        assert await engine.settle("g", [c.lease_id], "extend", T0 + 100,
                                   lease_ms=5000) == [OK]
        again = await claim(engine, now=T0 + 500)
        assert [(x.message.seq, x.attempts) for x in again.leases] == [
            (b.message.seq, 2), (msgs[3].seq, 1)]
        assert again.next_due == T0 + 500 + LEASE
        dead = await claim(engine, now=T0 + 500 + LEASE, max_deliver=2)
        assert [(x.message.seq, x.attempts) for x in dead.leases] == [(msgs[3].seq, 2)]
        assert [(json.loads(r.message.data)["offset"], json.loads(r.message.data)["error"])
                for r in dead.dead] == [(2, "boom")]
        assert dead.next_due == T0 + 500 + 2 * LEASE  # msgs[3] again; c is held to T0+5100
    finally:
        await engine.close()


@bounded()
async def test_sqlite_claim_sees_the_appends_committed_with_it(tmp_path: Path) -> None:
    """A claim that shares a group commit with earlier appends (and their trims) leases
    what they stored; a claim on an unknown group in it fails alone."""
    engine = SQLiteEngine(str(tmp_path / "hub.db"))
    await engine.open()
    try:
        await engine.create_group("g", ["t"], 0, T0)
        before = engine.commits
        other = sqlite3.connect(engine.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # hold the writer at its first group...
        first = asyncio.create_task(engine.append([req("t", 0)], T0))
        await asyncio.sleep(0.05 * UNIT)
        more = asyncio.create_task(engine.append([req("t", 1), req("t", 2, max_messages=1)], T0))
        bad = asyncio.create_task(engine.claim("nope", ["t"], 10**6, 10, LEASE, 3, T0))
        good = asyncio.create_task(engine.claim("g", ["t"], 10**6, 10, LEASE, 3, T0))
        await asyncio.sleep(0)
        other.execute("ROLLBACK")  # ...so that the others queue up behind it as one group
        other.close()
        results = await asyncio.gather(first, more, bad, good, return_exceptions=True)
        assert engine.commits - before == 2
        assert isinstance(results[2], NotFound)
        assert [(x.message.offset, x.message.data) for x in good.result().leases] == [(3, b"2")]
    finally:
        await engine.close()


KILL_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from hubbub.engines.base import AppendRequest
    from hubbub.engines.sqlite import SQLiteEngine

    async def main():
        engine = SQLiteEngine(sys.argv[1])
        await engine.open()
        await engine.create_group("g", ["t"], 0, 0)
        for i in range(10**6):
            now = i * 10
            await engine.append([AppendRequest("t", b"%d" % i, "application/json")] * 2, now)
            c = await engine.claim("g", ["t"], await engine.head_seq(), 4, 25, 10**6, now)
            for x in c.leases:
                print("L", x.message.seq, x.attempts, x.lease_id, flush=True)
            # Odd seqs are acked on their third lease: they stay pending meanwhile.
            done = [x.lease_id for x in c.leases if x.message.seq % 2 == 0 or x.attempts >= 3]
            if done:
                print("A", *done, flush=True)
                assert {o.value for o in await engine.settle("g", done, "ack", now)} == {"ok"}
                print("K", flush=True)

    asyncio.run(main())
""")


@bounded(30)
async def test_sqlite_groups_survive_kill_9(tmp_path: Path) -> None:
    """After a SIGKILL, every answered ack is kept and every other entry is still
    pending with its attempts and lease id (or one more attempt, from a claim that
    committed but was not yet answered)."""
    path = str(tmp_path / "hub.db")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILL_SCRIPT, path, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        while sum(line == b"K\n" for line in lines) < 150:
            line = await proc.stdout.readline()
            assert line, "the worker process exited early"
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        lines += (await proc.stdout.read()).splitlines(keepends=True)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    seen: dict[int, tuple[int, str]] = {}  # seq -> (attempts, lease id) of its last lease
    acked: set[int] = set()
    trying: list[str] = []  # an ack sent but not answered: either way is right
    for line in lines:
        if not line.endswith(b"\n"):
            continue  # cut short by the kill
        kind, *words = line.decode().split()
        if kind == "L":
            seen[int(words[0])] = (int(words[1]), words[2])
        elif kind == "A":
            trying = words
        else:
            acked |= {parse_lease_id(w) for w in trying}
            trying = []
    unsure = {parse_lease_id(w) for w in trying}
    held = sorted(set(seen) - acked - unsure)
    assert acked and held
    engine = SQLiteEngine(path)
    await engine.open()
    try:
        g = await info(engine)
        assert g.delivered_seq >= max(seen)
        # Set every lease id we saw still held due now, then take all entries once more.
        outcomes = await engine.settle("g", [seen[s][1] for s in held], "extend", 0)
        far = 10**12
        got = await engine.claim("g", ["t"], 0, 1000, LEASE, 10**6, far)
        stored = {x.message.seq: x.attempts - 1 for x in got.leases}
        assert len(stored) == g.pending < 1000
        assert not acked & set(stored)
        for s, outcome in zip(held, outcomes, strict=True):
            attempts = seen[s][0]
            assert (outcome, stored.get(s)) in [(OK, attempts), (EXPIRED, attempts + 1)], s
        # Only the last, unanswered claim can have leased messages we never saw.
        assert all(stored[s] == 1 and s > max(seen) for s in set(stored) - set(seen))
    finally:
        await engine.close()
