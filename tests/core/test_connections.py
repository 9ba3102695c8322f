"""The cluster's list of connections (``hub.connections``), with no server.

Two hubs on one shared :class:`MemoryEngine` stand for two nodes; the
connections are registered as a door registers them, with a ``close``
callback that records the reason. The invariants are those of
:mod:`hubbub.core.connections`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from hubbub.config import Config
from hubbub.core import Hub, connections
from hubbub.core.connections import Conn, check_id
from hubbub.engines.memory import MemoryEngine
from hubbub.protocol.errors import InvalidRequest
from tests.conftest import UNIT


@pytest.fixture
async def nodes() -> AsyncIterator[tuple[Hub, Hub]]:
    engine = MemoryEngine()
    a, b = Hub(engine, Config()), Hub(engine, Config())
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await b.stop()
        await a.stop()


def connect(hub: Hub, closed: list[str], door: str = "ws", subject: str | None = "ann",
            topics: tuple[str, ...] = ("chat.1",)) -> Conn:
    return hub.connections.add(door, subject, "10.0.0.7:5000", topics=lambda: list(topics),
                               close=closed.append)


async def listed_ids(hub: Hub) -> list[str]:
    return [c["id"] for c in await hub.connections.list()]


async def until(check: Any) -> None:
    async with asyncio.timeout(10 * UNIT):
        while not await check():
            await asyncio.sleep(0.05)


async def test_a_node_lists_its_own_connections_at_once(nodes: tuple[Hub, Hub]) -> None:
    """A registered connection is listed by its node with what its door said of it;
    once removed (twice: idempotent) it is gone."""
    a, _ = nodes
    conn = connect(a, [], door="sse", subject=None, topics=("x.>", "y"))
    [listed] = await a.connections.list()
    assert listed == {"id": conn.id, "node": a.nodes.id, "door": "sse", "subject": None,
                      "remote": "10.0.0.7:5000", "since": conn.since,
                      "subscriptions": ["x.>", "y"]}
    check_id(conn.id)  # the id it made is one it accepts
    assert await a.connections.find(conn.id) == listed
    a.connections.remove(conn)
    a.connections.remove(conn)
    assert await a.connections.list() == []


async def test_every_node_lists_the_cluster_oldest_first(nodes: tuple[Hub, Hub]) -> None:
    """Another node's connections appear in the list once it wrote them."""
    a, b = nodes
    first = connect(a, [])
    second = connect(b, [])

    async def both() -> bool:
        return sorted(await listed_ids(b)) == sorted([first.id, second.id])
    await until(both)
    assert await listed_ids(a) == await listed_ids(b)


async def test_another_node_sees_what_changed_once_it_is_said(nodes: tuple[Hub, Hub]) -> None:
    """Each entry is encoded once and again only after ``changed(conn)``: a
    connection's new subscriptions and subject reach the other nodes then,
    and the unchanged ones are not asked for theirs again."""
    a, b = nodes
    asked: list[str] = []
    subscribed = ["chat.1"]

    def topics_of(name: str, topics: list[str]) -> Any:
        return lambda: asked.append(name) or list(topics)

    moving = a.connections.add("ws", "ann", "10.0.0.7:5000", topics=topics_of("moving", subscribed),
                               close=lambda reason: None)
    still = a.connections.add("ws", "bob", "10.0.0.8:5000", topics=topics_of("still", ["news"]),
                              close=lambda reason: None)

    async def seen_by_b(want: dict[str, tuple[str | None, list[str]]]) -> bool:
        listed = {c["id"]: (c["subject"], c["subscriptions"]) for c in await b.connections.list()}
        return listed == want

    await until(lambda: seen_by_b({moving.id: ("ann", ["chat.1"]), still.id: ("bob", ["news"])}))
    asked.clear()
    subscribed.append("chat.2")
    moving.subject = "ann2"
    a.connections.changed(moving)
    await until(lambda: seen_by_b({moving.id: ("ann2", ["chat.1", "chat.2"]),
                                   still.id: ("bob", ["news"])}))
    assert "still" not in asked and "moving" in asked
    a.connections.changed()  # every connection: each is asked again
    await until(lambda: asyncio.sleep(0, "still" in asked))
    a.connections.remove(still)
    await until(lambda: seen_by_b({moving.id: ("ann2", ["chat.1", "chat.2"])}))


async def test_a_node_writes_its_list_in_chunks_and_only_those_that_changed(
    nodes: tuple[Hub, Hub], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Invariant "a record per chunk": at most CHUNK connections a record; a
    change writes its own chunk's record alone; a new connection takes room
    in the lowest chunk that has some; an emptied last chunk's record is
    deleted, and the other nodes list exactly the connections there are."""
    monkeypatch.setattr(connections, "CHUNK", 2)
    monkeypatch.setattr(connections, "RENEW", 3600.0)  # no renewal but the one asked for below
    a, b = nodes
    engine = a.engine
    mine = f"{connections.KIND}{a.nodes.id}/"
    put_keys: list[str] = []
    real_put = engine.put

    async def put(key: str, value: bytes, now: int, **kw: Any) -> Any:
        if key.startswith(connections.KIND):  # not the nodes' other records
            put_keys.append(key)
        return await real_put(key, value, now, **kw)

    monkeypatch.setattr(engine, "put", put)

    async def records() -> dict[str, list[str]]:
        return {r.key.removeprefix(mine): [c["id"] for c in json.loads(r.value)]
                for r in await engine.scan(mine, a.now())}

    async def b_lists(ids: list[str]) -> bool:
        return sorted(await listed_ids(b)) == sorted(ids)

    conns = [connect(a, []) for _ in range(5)]
    ids = [c.id for c in conns]
    await until(lambda: b_lists(ids))
    assert await records() == {"0": ids[0:2], "1": ids[2:4], "2": ids[4:5]}

    put_keys.clear()
    a.connections.changed(conns[3])
    await until(lambda: asyncio.sleep(0, put_keys != []))
    await asyncio.sleep(2 * connections.INTERVAL)  # nothing else was to be written
    assert put_keys == [mine + "1"]

    deleted: list[str] = []
    real_delete = engine.delete

    async def delete(key: str, now: int, **kw: Any) -> bool:
        if key.startswith(connections.KIND):
            deleted.append(key)
        return await real_delete(key, now, **kw)

    monkeypatch.setattr(engine, "delete", delete)
    a.connections.remove(conns[1])  # room in chunk 0: the next one goes there
    newer = connect(a, [])
    assert newer.chunk == 0
    a.connections.remove(conns[4])  # the last chunk empties: its record goes
    ids = [ids[0], newer.id, ids[2], ids[3]]
    await until(lambda: b_lists(ids))
    assert await records() == {"0": [ids[0], newer.id], "1": ids[2:4]}
    # Renewals (made frequent here) write the two chunks there are, and delete nothing more.
    monkeypatch.setattr(connections, "RENEW", 0.1)
    put_keys.clear()
    a.connections.changed(newer)  # wakes the writer: chunk 0, then renewals
    await until(lambda: asyncio.sleep(0, put_keys.count(mine + "1") >= 2))
    assert deleted == [mine + "2"] and set(put_keys) == {mine + "0", mine + "1"}
    another = connect(a, [])  # chunks 0 and 1 are full: a chunk 2 again
    assert another.chunk == 2
    await until(lambda: b_lists([*ids, another.id]))


async def test_a_chunk_forgotten_while_it_was_asked_for_is_skipped(
    nodes: tuple[Hub, Hub], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that comes and goes in the last chunk while that chunk's
    record is being deleted asks for the chunk again, which is then forgotten:
    the next write skips it, and the list goes on being written."""
    monkeypatch.setattr(connections, "CHUNK", 2)
    a, b = nodes
    engine = a.engine
    mine = f"{connections.KIND}{a.nodes.id}/"
    first, second, third = (connect(a, []) for _ in range(3))
    await until(lambda: b_lists_ids(b, [first.id, second.id, third.id]))
    real_delete = engine.delete
    passing: list[Conn] = []

    async def delete(key: str, now: int, **kw: Any) -> bool:
        if key == mine + "1" and not passing:  # while chunk 1's record goes
            passing.append(connect(a, []))  # into chunk 1 (chunk 0 is full) ...
            a.connections.remove(passing[0])  # ... and out again
        return await real_delete(key, now, **kw)

    monkeypatch.setattr(engine, "delete", delete)
    a.connections.remove(third)
    await until(lambda: b_lists_ids(b, [first.id, second.id]))
    assert passing
    a.connections.remove(second)  # the writer is alive: later changes are written
    await until(lambda: b_lists_ids(b, [first.id]))


async def b_lists_ids(b: Hub, ids: list[str]) -> bool:
    return sorted(await listed_ids(b)) == sorted(ids)


async def test_a_connection_is_disconnected_from_any_node(nodes: tuple[Hub, Hub]) -> None:
    """An order from another node closes it with the reason, and disconnect answers
    once it is gone from the list."""
    a, b = nodes
    closed: list[str] = []
    conn = connect(a, closed)

    async def listed_on_b() -> bool:
        return conn.id in await listed_ids(b)
    await until(listed_on_b)
    assert await b.connections.disconnect(conn.id, "bye", wait=10 * UNIT)
    assert closed == ["bye"]
    assert conn.id not in await listed_ids(a)


async def test_a_node_closes_its_own_connection_without_an_order(
        nodes: tuple[Hub, Hub]) -> None:
    """The node that holds a connection closes it at once, and only once."""
    a, _ = nodes
    closed: list[str] = []
    conn = connect(a, closed)
    assert await a.connections.disconnect(conn.id, "now", wait=1 * UNIT)
    assert not a.connections.close_mine(conn.id, "again")
    assert closed == ["now"]


async def test_a_connection_nobody_holds_is_gone_at_once(
        nodes: tuple[Hub, Hub]) -> None:
    """A well-formed id nobody holds is not in the list: disconnect says it is gone."""
    _, b = nodes
    assert await b.connections.disconnect("0" * 16, "bye", wait=0.2 * UNIT)
    assert await b.connections.find("0" * 16) is None


async def test_a_stopped_node_takes_its_list_out(nodes: tuple[Hub, Hub]) -> None:
    """A node that stops deletes its record: its connections leave the others' list."""
    a, b = nodes
    conn = connect(a, [])

    async def listed_on_b() -> bool:
        return conn.id in await listed_ids(b)
    await until(listed_on_b)
    await a.connections.stop()
    assert conn.id not in await listed_ids(b)


@pytest.mark.parametrize("conn_id", ["", "0" * 15, "0" * 17, "g" * 16, "ABCDEF0123456789",
                                     None, 16])
async def test_what_is_not_a_connection_id_is_refused(nodes: tuple[Hub, Hub],
                                                      conn_id: Any) -> None:
    """16 lower-case hex digits or InvalidRequest naming the id, before any look-up."""
    a, _ = nodes
    with pytest.raises(InvalidRequest) as refused:
        await a.connections.find(conn_id)
    assert refused.value.field == "id"
    with pytest.raises(InvalidRequest):
        await a.connections.disconnect(conn_id, "bye")
