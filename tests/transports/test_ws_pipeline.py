"""Pipelined ops on the WebSocket door (:mod:`hubbub.transports.ws.pipeline`).

A client sends many ops without waiting for their answers: they are stored in
the order sent, share the store's commits, and are answered in order, an
``err`` in its op's place. Over real sockets on every engine, plus the
:class:`Pipeline` alone (no network).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.config import Config
from hubbub.transports.ws.pipeline import Pipeline
from tests.conftest import UNIT, HubServer, session_redis
from tests.transports.test_ws import REPLIES, Client, ws_client


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"pipe": {"max_message_size": 1000}}})


async def answers(c: Client, n: int) -> list[dict[str, Any]]:
    """The next ``n`` answers (ok, err, pong), pushed frames kept aside."""
    got: list[dict[str, Any]] = []
    while len(got) < n:
        frame = await c.recv()
        if frame["op"] in REPLIES:
            got.append(frame)
        else:
            c.pushed.append(frame)
    return got


async def history(client: httpx.AsyncClient, topic: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/topics/{topic}/messages", params={"after": "start",
                                                                  "limit": 1000})
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


@pytest.mark.sockets
async def test_pipelined_pubs_are_stored_and_answered_in_the_order_sent(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """300 pubs over two topics sent without waiting: answers come in op order (a bad
    op's ``err`` in its place), each topic's offsets follow the order sent, and the
    log holds exactly the accepted ones."""
    topics = ["pipe.a", "pipe.b", "pipe.a"]
    async with ws_client(hub_server) as c:
        ops = []
        for i in range(300):
            op: dict[str, Any] = {"op": "pub", "id": i, "topic": topics[i % 3], "data": i}
            if i in (7, 150):
                op["topic"] = "bad topic"
            elif i == 200:
                op["data"] = "x" * 2000  # over the namespace's max_message_size
            ops.append(op)
        for op in ops:
            await c.send(op)
        got = await answers(c, len(ops))
    assert [a["id"] for a in got] == list(range(300))
    bad = {a["id"] for a in got if a["op"] == "err"}
    assert bad == {7, 150, 200}
    for topic in ("pipe.a", "pipe.b"):
        sent = [op["data"] for op in ops if op["topic"] == topic and op["id"] not in bad]
        oks = [a for a in got if a["op"] == "ok" and a["topic"] == topic]
        assert [a["offset"] for a in oks] == list(range(1, len(sent) + 1))
        stored = await history(client, topic)
        assert [m["data"] for m in stored] == sent
        assert [m["id"] for m in stored] == [a["msg_id"] for a in oks]


@pytest.mark.sockets
async def test_a_subscriber_on_the_same_connection_gets_its_pipelined_pubs_in_order(
    hub_server: HubServer,
) -> None:
    """Messages reach a subscriber once each, in the order they were sent."""
    async with ws_client(hub_server) as c, ws_client(hub_server) as sub:
        await sub.ok({"op": "sub", "id": 1, "topics": ["pipe.live"]})
        await c.ok({"op": "sub", "id": "s", "topics": ["pipe.live"]})
        for i in range(100):
            await c.send({"op": "pub", "id": i, "topic": "pipe.live", "data": i})
        oks = await answers(c, 100)
        assert [a["offset"] for a in oks] == list(range(1, 101))
        assert [m["data"] for m in await c.messages(100)] == list(range(100))
        assert [m["data"] for m in await sub.messages(100)] == list(range(100))
        await sub.quiet()


@pytest.mark.sockets
async def test_a_key_sent_twice_in_flight_is_stored_once(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Two pipelined pubs with one idempotency key: the second is answered as a
    duplicate of the first, and the log holds it once."""
    async with ws_client(hub_server) as c:
        for i, key in enumerate(["k1", None, "k1", "k2"]):
            op: dict[str, Any] = {"op": "pub", "id": i, "topic": "pipe.key", "data": i}
            if key is not None:
                op["key"] = key
            await c.send(op)
        got = await answers(c, 4)
    assert [a["id"] for a in got] == [0, 1, 2, 3]
    assert [a.get("duplicate", False) for a in got] == [False, False, True, False]
    assert (got[2]["offset"], got[2]["msg_id"]) == (got[0]["offset"], got[0]["msg_id"])
    assert [m["data"] for m in await history(client, "pipe.key")] == [0, 1, 3]


@pytest.mark.sockets
async def test_other_ops_wait_for_the_pubs_before_them(hub_server: HubServer) -> None:
    """A ``sub`` at the live end and a ``ping`` sent right after pubs are answered after
    them, and the subscription starts after those pubs (invariant "barrier before other ops")."""
    async with ws_client(hub_server) as c:
        for i in range(20):
            await c.send({"op": "pub", "id": i, "topic": "pipe.bar", "data": i})
        await c.send({"op": "sub", "id": "s", "topics": ["pipe.bar"]})
        await c.send({"op": "ping", "id": "p"})
        got = await answers(c, 22)
        assert [a["id"] for a in got] == [*range(20), "s", "p"]
        await c.ok({"op": "pub", "id": "last", "topic": "pipe.bar", "data": "last"})
        assert [m["data"] for m in await c.messages(1)] == ["last"]
        await c.quiet()


@pytest.mark.sockets
async def test_a_req_keeps_its_place_among_pipelined_pubs(hub_server: HubServer) -> None:
    """``pub``, ``req``, ``pub`` to one topic sent at once are stored in that order
    (the ``req`` waits for its inbox before its append, the pub after it waits
    for the ``req``); the ``reply`` and a pub after it are answered in order."""
    async with hub_server.client() as http:  # a group's worker: requests are taken
        r = await http.post("/v1/groups/svc/pull", params={"topic": "pipe.svc", "lease": 60})
        assert r.status_code == 200, r.text
    await hub_server.until_responder("pipe.svc")
    async with ws_client(hub_server) as worker, ws_client(hub_server) as c:
        await worker.ok({"op": "sub", "id": 1, "topics": ["pipe.svc"]})
        await c.send({"op": "pub", "id": 1, "topic": "pipe.svc", "data": "before"})
        await c.send({"op": "req", "id": 2, "topic": "pipe.svc", "data": "ask",
                      "timeout": 10 * UNIT})
        await c.send({"op": "pub", "id": 3, "topic": "pipe.svc", "data": "after"})
        first, env, last = await worker.messages(3)
        assert (first["data"], env["data"]["data"], last["data"]) == ("before", "ask", "after")
        assert [first["offset"], env["offset"], last["offset"]] == [1, 2, 3]
        assert [a["id"] for a in await answers(c, 2)] == [1, 3]
        await worker.send({"op": "reply", "id": "r", "to": env["data"]["request"],
                           "data": "answer"})
        await worker.send({"op": "pub", "id": "p", "topic": "pipe.other", "data": 0})
        got = await answers(worker, 2)
        assert [a["id"] for a in got] == ["r", "p"] and {a["op"] for a in got} == {"ok"}
        (reply,) = await answers(c, 1)
        assert reply["id"] == 2 and reply["reply"]["data"] == "answer"


@contextlib.contextmanager
def writes_held(engine: str, tmp_path: Path) -> Iterator[None]:
    """Make the store's writes wait while inside: another SQLite connection holds
    the write lock (the writer waits, ``busy_timeout``), or Redis pauses every
    write command of its clients (``CLIENT PAUSE ... WRITE``: scripts included)."""
    if engine == "sqlite":
        lock = sqlite3.connect(tmp_path / "hub.db", isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            yield
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        return
    with socket.create_connection(("127.0.0.1", session_redis().port)) as s:
        s.sendall(b"CLIENT PAUSE 60000 WRITE\r\n")
        assert s.recv(64).startswith(b"+OK")
        try:
            yield
        finally:
            s.sendall(b"CLIENT UNPAUSE\r\n")
            assert s.recv(64).startswith(b"+OK")


@pytest.mark.parametrize("engine", ["sqlite", "redis"])
@pytest.mark.sockets
async def test_pipelined_pubs_share_commits(
    hub_server: HubServer, engine: str, tmp_path: Path
) -> None:
    """Pubs sent while the store's writes wait are committed together: fewer commits
    (SQLite transactions, Redis append scripts) than pubs. Carried out one at a time,
    each would have had a commit of its own."""
    store = hub_server.hub.engine

    def commits() -> int:
        return int(store.commits if engine == "sqlite" else store.groups)

    async with ws_client(hub_server) as c:
        await c.ok({"op": "pub", "id": "warm", "topic": "pipe.gc", "data": 0})
        before = commits()
        with writes_held(engine, tmp_path):
            for i in range(50):
                await c.send({"op": "pub", "id": i, "topic": "pipe.gc", "data": i})
            await c.send({"op": "ping", "id": "p"})
            await asyncio.sleep(0.3 * UNIT)  # let the frames in; the writes wait
        got = await answers(c, 51)
    assert [a["id"] for a in got] == [*range(50), "p"]
    assert [a["offset"] for a in got[:50]] == list(range(2, 52))
    assert commits() - before < 25


# -- the pipeline alone ----------------------------------------------------------


class Sent:
    """The answers a pipeline sent, one list per write."""

    def __init__(self) -> None:
        self.writes: list[list[Any]] = []

    async def __call__(self, answers: list[Any]) -> None:
        self.writes.append(answers)

    @property
    def answers(self) -> list[Any]:
        return [a for w in self.writes for a in w]


async def settle(pipeline: Pipeline) -> None:
    async with asyncio.timeout(5 * UNIT):
        await pipeline.drain()


async def test_answers_go_in_op_order_whenever_ops_finish() -> None:
    """Ops that finish out of order are answered in op order; ``None`` is no answer."""
    sent = Sent()
    p = Pipeline(sent)
    loop = asyncio.get_running_loop()
    results = [loop.create_future() for _ in range(4)]
    for fut in results:
        p.wait_for(fut)
    p.answer("now")
    for i in (3, 1, 2, 0):
        results[i].set_result(None if i == 1 else i)
        await asyncio.sleep(0)
    await settle(p)
    assert sent.answers == [0, 2, 3, "now"]
    await p.close()


async def test_answers_ready_together_go_in_one_write() -> None:
    """Every answer ready when the oldest is gets sent with it, in one write."""
    sent = Sent()
    p = Pipeline(sent)
    gate = asyncio.Event()

    async def op(i: int) -> int:
        await gate.wait()
        return i

    for i in range(10):
        p.start(op(i), f"op-{i}")
    await asyncio.sleep(0)  # every op waits at the gate, as for one commit
    gate.set()
    await settle(p)
    assert sent.writes == [list(range(10))]
    await p.close()


async def test_room_waits_while_the_bound_is_reached() -> None:
    """Past ``limit`` ops waiting, :meth:`room` waits until answers went out
    (invariant "ops in flight bounded")."""
    sent = Sent()
    p = Pipeline(sent, limit=2)
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    p.wait_for(first)
    await p.room()  # one waits: room
    p.wait_for(second)
    room = asyncio.create_task(p.room())
    await asyncio.sleep(0)
    assert not room.done() and len(p) == 2
    first.set_result("a")
    async with asyncio.timeout(5 * UNIT):
        await room
    assert sent.answers == ["a"]
    second.set_result("b")
    await settle(p)
    assert sent.answers == ["a", "b"]
    await p.close()


async def test_the_lane_holds_later_ops_until_its_hand_off() -> None:
    """An op waiting on the lane goes on only after the holder hands off
    (invariant "ops handed off in order")."""
    p = Pipeline(Sent())
    order: list[str] = []
    before, lane = p.hold_lane()
    assert before is None and p.lane is lane

    async def later() -> None:
        assert p.lane is not None
        await p.lane
        order.append("later")

    task = asyncio.create_task(later())
    await asyncio.sleep(0)
    order.append("holder")
    Pipeline.hand_off(lane)
    Pipeline.hand_off(lane)  # idempotent
    async with asyncio.timeout(5 * UNIT):
        await task
    assert order == ["holder", "later"]
    await p.close()


async def test_close_cancels_what_is_in_flight() -> None:
    """Closing cancels the ops in flight and sends nothing more."""
    sent = Sent()
    p = Pipeline(sent)
    never = asyncio.Event()

    async def op() -> int:
        await never.wait()
        return 1

    p.start(op(), "op")
    await asyncio.sleep(0)
    async with asyncio.timeout(5 * UNIT):
        await p.close()
    assert sent.answers == [] and len(p) == 0
