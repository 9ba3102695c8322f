"""The records part of the Engine contract (``get``, ``put``, ``delete``,
``scan``, ``expire``), run against every engine.

The contract's rules are checked one by one, then a hypothesis run drives
each engine and a plain dict model with the same random operations and
compares every answer; SQLite's records survive a reopen, and concurrent
compare-and-sets and sweeps let exactly one caller win each record.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.engines.base import Engine, Record

from .conftest import UNIT, MakeEngine, bounded

T0 = 1_700_000_000_000


@bounded()
async def test_put_get_versions_and_conditions(engine: Engine) -> None:
    assert await engine.get("job/a", T0) is None
    first = await engine.put("job/a", b"one", T0, if_version=0)
    assert first == Record("job/a", b"one", 1, None)
    assert await engine.put("job/a", b"again", T0, if_version=0) is None
    assert await engine.put("job/a", b"two", T0, if_version=2) is None
    second = await engine.put("job/a", b"two", T0, if_version=1)
    assert second == Record("job/a", b"two", 2, None)
    assert await engine.get("job/a", T0) == second
    third = await engine.put("job/a", b"\x00\xffbytes", T0)  # unconditional
    assert third == Record("job/a", b"\x00\xffbytes", 3, None)
    assert await engine.get("job/a", T0) == third


@bounded()
async def test_delete_is_conditional_and_reports(engine: Engine) -> None:
    await engine.put("job/d", b"x", T0)
    await engine.put("job/d", b"y", T0)
    assert not await engine.delete("job/d", T0, if_version=1)
    assert (await engine.get("job/d", T0)) is not None
    assert await engine.delete("job/d", T0, if_version=2)
    assert await engine.get("job/d", T0) is None
    assert not await engine.delete("job/d", T0)
    # A new record under the key starts again at version 1.
    assert await engine.put("job/d", b"z", T0, if_version=0) == Record("job/d", b"z", 1, None)


@bounded()
async def test_an_expired_record_is_absent_until_swept(engine: Engine) -> None:
    await engine.put("upload/a", b"a", T0, expires=T0 + 10)
    await engine.put("upload/b", b"b", T0, expires=T0 + 20)
    await engine.put("upload/c", b"c", T0)
    assert (await engine.get("upload/a", T0 + 9)) is not None
    assert await engine.get("upload/a", T0 + 10) is None
    assert [r.key for r in await engine.scan("upload/", T0 + 15)] == ["upload/b", "upload/c"]
    assert not await engine.delete("upload/a", T0 + 15)
    # put over an expired record: it counts as absent, so if_version=0 holds.
    fresh = await engine.put("upload/a", b"new", T0 + 15, if_version=0)
    assert fresh == Record("upload/a", b"new", 1, None)
    assert await engine.expire("upload/", T0 + 19) == []
    gone = await engine.expire("upload/", T0 + 20)  # expired at its ``expires``
    assert gone == [Record("upload/b", b"b", 1, T0 + 20)]
    assert await engine.expire("upload/", T0 + 25) == []
    assert [r.key for r in await engine.scan("upload/", T0 + 20)] == ["upload/a", "upload/c"]


@bounded()
async def test_put_can_set_and_clear_an_expiry(engine: Engine) -> None:
    await engine.put("presence/x", b"1", T0, expires=T0 + 5)
    await engine.put("presence/x", b"2", T0 + 1, if_version=1)  # no expiry any more
    assert await engine.expire("presence/", T0 + 100) == []
    assert await engine.get("presence/x", T0 + 100) == Record("presence/x", b"2", 2, None)
    await engine.put("presence/x", b"3", T0 + 100, expires=T0 + 200)
    assert await engine.get("presence/x", T0 + 150) == Record("presence/x", b"3", 3, T0 + 200)


@bounded()
async def test_scan_and_expire_stay_within_the_prefix(engine: Engine) -> None:
    keys = ["job/a", "job/a/1", "job/ab", "job/b", "jobs/a", "upload/a", "job/\u00e9", "job/~"]
    for key in keys:
        await engine.put(key, key.encode(), T0, expires=T0 + 1)
    assert [r.key for r in await engine.scan("job/", T0)] == sorted(
        k for k in keys if k.startswith("job/"))
    assert [r.key for r in await engine.scan("job/a", T0)] == ["job/a", "job/a/1", "job/ab"]
    assert [r.key for r in await engine.scan("job/", T0, limit=2)] == ["job/a", "job/a/1"]
    assert await engine.scan("job/", T0, limit=0) == []
    assert [r.key for r in await engine.expire("job/a", T0 + 1, limit=2)] == ["job/a", "job/a/1"]
    assert [r.key for r in await engine.expire("job/", T0 + 1)] == [
        "job/ab", "job/b", "job/~", "job/\u00e9"]
    assert [r.key for r in await engine.scan("jobs/", T0)] == ["jobs/a"]
    assert [r.key for r in await engine.scan("upload/", T0)] == ["upload/a"]


@bounded()
async def test_keys_and_prefixes_must_name_a_kind(engine: Engine) -> None:
    for call in (lambda: engine.get("nokind", T0), lambda: engine.put("nokind", b"", T0),
                 lambda: engine.delete("nokind", T0), lambda: engine.scan("job", T0),
                 lambda: engine.expire("", T0)):
        with pytest.raises(ValueError, match="names no kind"):
            await call()


@bounded(20)
async def test_concurrent_compare_and_set_has_one_winner(engine: Engine) -> None:
    await engine.put("job/race", b"0", T0)
    wins = await asyncio.gather(*(
        engine.put("job/race", str(i).encode(), T0, if_version=1) for i in range(20)))
    winners = [w for w in wins if w is not None]
    assert len(winners) == 1 and winners[0].version == 2
    assert await engine.get("job/race", T0) == winners[0]


@bounded(20)
async def test_concurrent_sweeps_return_each_record_once(
    make_engine: MakeEngine, engine_name: str
) -> None:
    """Two engines on one store (two nodes) sweep at once: each record goes to one.

    (A memory engine is one process's store: its two sweepers share it.)
    """
    a = make_engine()
    b = a if engine_name == "memory" else make_engine()
    for e in {a, b}:
        await e.open()
    try:
        for i in range(60):
            await a.put(f"presence/{i:03}", b"", T0, expires=T0 + i % 3)
        swept = await asyncio.gather(*(
            e.expire("presence/", T0 + 10, limit=7) for e in [a, b] * 10))
        keys = [r.key for batch in swept for r in batch]
        assert sorted(keys) == [f"presence/{i:03}" for i in range(60)]
    finally:
        for e in {a, b}:
            await e.close()


@bounded(20)
async def test_records_survive_a_reopen(make_engine: MakeEngine, engine_name: str) -> None:
    if engine_name == "memory":
        pytest.skip("the memory engine keeps nothing")
    e = make_engine()
    await e.open()
    await e.put("upload/keep", b"offset=5", T0, expires=T0 + 1000)
    await e.put("upload/keep", b"offset=9", T0, if_version=1, expires=T0 + 1000)
    await e.close()
    again = make_engine()
    await again.open()
    try:
        assert await again.get("upload/keep", T0) == Record("upload/keep", b"offset=9", 2, T0 + 1000)
    finally:
        await again.close()


# -- a random run against a model ------------------------------------------------


@dataclass
class Model:
    """The contract as a dict: the reference the engines are compared with."""

    records: dict[str, Record]

    def live(self, key: str, now: int) -> Record | None:
        r = self.records.get(key)
        return None if r is None or (r.expires is not None and r.expires <= now) else r

    def apply(self, op: tuple[Any, ...]) -> Any:
        name, now, key = op[0], op[1], op[2]
        if name == "get":
            return self.live(key, now)
        if name == "put":
            value, expires, if_version = op[3:]
            live = self.live(key, now)
            version = live.version if live else 0
            if if_version is not None and version != if_version:
                return None
            r = self.records[key] = Record(key, value, version + 1, expires)
            return r
        if name == "delete":
            live, if_version = self.live(key, now), op[3]
            if live is None or (if_version is not None and live.version != if_version):
                return False
            del self.records[key]
            return True
        limit = op[3]
        if name == "scan":
            found = [self.live(k, now) for k in sorted(self.records) if k.startswith(key)]
            return [r for r in found if r is not None][:limit]
        gone = sorted((r for k, r in self.records.items() if k.startswith(key)
                       and r.expires is not None and r.expires <= now), key=lambda r: r.key)
        for r in gone[:limit]:
            del self.records[r.key]
        return gone[:limit]


KEYS = st.sampled_from(["job/a", "job/b", "job/ab", "job/a/x", "upload/a", "upload/\u00e9"])
PREFIXES = st.sampled_from(["job/", "job/a", "upload/", "upload/\u00e9", "job/zz"])
TIMES = st.integers(0, 8).map(lambda t: T0 + t)  # few times: boundaries get hit
EXPIRES = st.none() | TIMES
VERSIONS = st.none() | st.integers(0, 4)
OPS = st.lists(st.one_of(
    st.tuples(st.just("get"), TIMES, KEYS),
    st.tuples(st.just("put"), TIMES, KEYS, st.binary(max_size=8), EXPIRES, VERSIONS),
    st.tuples(st.just("delete"), TIMES, KEYS, VERSIONS),
    st.tuples(st.just("scan"), TIMES, PREFIXES, st.integers(0, 5)),
    st.tuples(st.just("expire"), TIMES, PREFIXES, st.integers(0, 5)),
), max_size=40)


async def call(engine: Engine, op: tuple[Any, ...]) -> Any:
    name, now, key = op[0], op[1], op[2]
    if name == "get":
        return await engine.get(key, now)
    if name == "put":
        return await engine.put(key, op[3], now, expires=op[4], if_version=op[5])
    if name == "delete":
        return await engine.delete(key, now, if_version=op[3])
    if name == "scan":
        return await engine.scan(key, now, op[3])
    return await engine.expire(key, now, op[3])


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS)
async def test_engine_answers_as_the_model_does(make_engine: MakeEngine,
                                                ops: list[tuple[Any, ...]]) -> None:
    engine = make_engine()
    await engine.open()
    try:
        # Each example starts empty: sweep what an earlier example left.
        for kind in ("job/", "upload/"):
            for r in await engine.scan(kind, T0):
                await engine.delete(r.key, T0)
            await engine.expire(kind, T0 + 10**9, limit=10**6)
        model = Model({})
        for i, op in enumerate(ops):
            assert await call(engine, op) == model.apply(op), (i, op)
    finally:
        async with asyncio.timeout(10 * UNIT):
            await engine.close()
