"""A cluster: several ``hubbub serve`` nodes on one Redis, clients on any node.

Publishers talk to node A, subscribers to nodes B and C on every door (SSE,
WebSocket, long poll, short poll; one topic and a wildcard). Each subscriber
must read exactly what was published: every message once, in order. The slow
tests kill a node with SIGKILL mid-stream (its clients resume on another node
from their cursors: readers that move on to the next node themselves, and
``AsyncClient`` subscriptions behind a balancer) and stop Redis during a
publish loop (no publish is reported stored unless it is; the nodes recover
by themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from hubbub.client.aio import TRANSPORTS, AsyncClient
from hubbub.client.backoff import BackoffPolicy
from hubbub.client.base import NETWORK_ERRORS
from hubbub.client.streams import Event, read_poll, read_sse, read_ws
from hubbub.core import Hub
from hubbub.engines import open_engine
from hubbub.protocol import cursor as _cursor
from hubbub.protocol.errors import HubbubError
from hubbub.protocol.message import Message
from tests.conftest import UNIT, HubProcess, RedisServer, session_redis, start_server

Spawn = Callable[..., HubProcess]
DOORS = ("sse", "ws", "longpoll", "poll")


@dataclass
class Reader:
    """A subscriber that fails over: on a broken link it resumes on the next node."""

    nodes: list[str]
    topics: list[str]
    door: str
    got: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[dict[str, Any]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    cursor: str = "end"

    def open(self, http: httpx.AsyncClient, url: str) -> AsyncGenerator[Event, None]:
        if self.door == "ws":
            return read_ws("ws" + url.removeprefix("http") + "/v1/ws", self.topics, self.cursor)
        if self.door == "sse":
            return read_sse(http, self.topics, self.cursor)
        wait = 5.0 if self.door == "longpoll" else 0.0
        return read_poll(http, self.topics, self.cursor, wait=wait, interval=0.05)

    async def run(self, total: int) -> None:
        node = 0
        while len(self.got) < total:
            url = self.nodes[node % len(self.nodes)]
            try:
                async with httpx.AsyncClient(base_url=url, timeout=10 * UNIT) as http, \
                        contextlib.aclosing(self.open(http, url)) as events:
                    async for ev in events:
                        if ev.cursor:
                            self.cursor = ev.cursor
                        if ev.kind == "message":
                            self.got.append(ev.body)
                        elif ev.kind == "gap":
                            self.gaps.append(ev.body)
                        self.ready.set()
                        if len(self.got) >= total:
                            return
            except HubbubError as exc:  # the hub said why (503, SSE error, close code)
                if not exc.temporary:
                    raise
                self.errors.append(exc)
            except NETWORK_ERRORS as exc:  # the node is gone: try the next one
                self.errors.append(exc)
                node += 1
            await asyncio.sleep(0.05)


def seq(msg: dict[str, Any]) -> int:
    return _cursor.decode(msg["cursor"]).seq


def check(reader: Reader, receipts: list[dict[str, Any]]) -> None:
    """The reader got exactly the messages of its topics, once, in order."""
    if reader.topics == ["c.>"]:
        want = sorted(receipts, key=seq)  # one order over topics: the store's seq
    else:
        want = sorted((r for r in receipts if r["topic"] in reader.topics),
                      key=lambda r: r["offset"])
    got = [(m["topic"], m["offset"], m["data"]) for m in reader.got]
    assert got == [(r["topic"], r["offset"], r["data"]) for r in want], reader.door
    assert reader.gaps == []


async def publish(url: str, topic: str, n: int, tag: int, receipts: list[dict[str, Any]],
                  pause: float = 0.0) -> None:
    """Publish ``n`` messages; keep each receipt with the data that was sent."""
    async with httpx.AsyncClient(base_url=url, timeout=10 * UNIT) as http:
        for i in range(n):
            data = {"p": tag, "i": i}
            r = await http.post(f"/v1/topics/{topic}", json=data)
            assert r.status_code == 201, r.text
            receipts.append({**r.json(), "data": data})
            if pause:
                await asyncio.sleep(pause)


def readers_for(nodes: list[str]) -> list[Reader]:
    """On every door: the wildcard over all topics, and one topic."""
    return [Reader(nodes, topics, door) for door in DOORS for topics in (["c.>"], ["c.0"])]


async def run_cluster(readers: list[Reader], *work: Any,
                      expect: Callable[[Reader], int]) -> None:
    """Start the readers, wait until they listen, run ``work``, then wait until
    each reader has ``expect(reader)`` messages (asked after the work is done)."""
    tasks = [asyncio.create_task(r.run(10**9)) for r in readers]
    try:
        async with asyncio.timeout(15 * UNIT):
            for r in readers:
                if r.door != "longpoll":  # a long poll says nothing until a message comes
                    await r.ready.wait()
        await asyncio.gather(*work)
        async with asyncio.timeout(30 * UNIT):
            while any(len(r.got) < expect(r) for r in readers):
                await asyncio.sleep(0.02)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_three_nodes_every_subscriber_gets_every_message_once_in_order(
    spawn_hub: Spawn,
) -> None:
    """Published on node A, read on nodes B and C through every door: each reader
    gets every message once, in order (store seq order across topics)."""
    store = session_redis().store()
    a, b, c = (spawn_hub(store) for _ in range(3))
    readers = readers_for([b.url]) + readers_for([c.url])
    for r in readers:
        r.cursor = "start" if r.door == "longpoll" else "end"
    receipts: list[dict[str, Any]] = []
    pubs = [publish(a.url, f"c.{k}", 40, k, receipts) for k in range(3)]
    await run_cluster(readers, *pubs, expect=lambda r: 120 if r.topics == ["c.>"] else 40)
    for r in readers:
        check(r, receipts)


async def test_each_node_encodes_once_for_its_subscribers() -> None:
    """On a node, every local subscriber gets the same Message object (one encoding
    per node), whichever node published it."""
    store = session_redis().store()
    one, two = Hub(open_engine(store)), Hub(open_engine(store))
    await one.start()
    await two.start()
    try:
        subs = [await two.subscribe(["e.>"]) for _ in range(3)]
        for s in subs:  # caught up with the (empty) store: live from here on
            assert await s.next_batch(1, timeout=0) == []
        await one.publish("e.x", b'{"n":1}')
        async with asyncio.timeout(5 * UNIT):
            firsts = [(await s.next_batch(1))[0] for s in subs]
        assert isinstance(firsts[0], Message)
        assert all(m is firsts[0] for m in firsts)
        firsts[0].sse_event()
        assert all(m._sse is firsts[0]._sse for m in firsts)
    finally:
        await one.stop()
        await two.stop()


async def test_subscribers_are_told_when_the_fanout_link_drops() -> None:
    """A node that loses its pub/sub link tells every subscriber, with the cursor to
    resume from: SSE ``event: error``, WebSocket close 1013, long poll 503."""
    srv = await start_server(session_redis().store())
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=10 * UNIT) as http:
            r = await http.post("/v1/topics/told.a", json=1)
            cursor = r.json()["cursor"]
            async with contextlib.AsyncExitStack() as stack:
                source = await stack.enter_async_context(
                    aconnect_sse(http, "GET", "/v1/topics/told.a/events",
                                 headers={"Last-Event-ID": cursor}))
                events = await stack.enter_async_context(
                    contextlib.aclosing(source.aiter_sse()))
                ws = await stack.enter_async_context(connect(
                    srv.ws_url + "/v1/ws", subprotocols=[Subprotocol("hubbub.v1.json")]))
                await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["told.>"]}))
                ok = json.loads(await ws.recv())
                assert (await anext(events)).event == "ready"
                poll = asyncio.create_task(http.get(
                    "/v1/topics/told.a/messages", params={"after": cursor, "wait": "30"}))
                async with asyncio.timeout(5 * UNIT):
                    while srv.hub.fanout.count("told.a") < 3:  # all three are live
                        await asyncio.sleep(0.01)
                async with aioredis.Redis.from_url(session_redis().url) as r:
                    for client in await r.client_list(_type="pubsub"):
                        if client["name"] == srv.hub.engine.node:
                            await r.client_kill_filter(_id=client["id"])
                async with asyncio.timeout(5 * UNIT):
                    error = await anext(events)
                    with pytest.raises(ConnectionClosed):
                        while True:
                            await ws.recv()
                    answer = await poll
                assert error.event == "error" and error.id == cursor
                assert json.loads(error.data) == {
                    "code": "unavailable", "cursor": cursor,
                    "message": "lost the link to the store; resume from the cursor"}
                assert ws.close_code == 1013 and ok["cursor"] in (ws.close_reason or "")
                assert answer.status_code == 503
                assert answer.json()["code"] == "unavailable"
                assert answer.json()["cursor"] == cursor
    finally:
        await srv.stop()


@pytest.mark.slow
async def test_killed_node_clients_resume_on_another_node(spawn_hub: Spawn) -> None:
    """Node B is SIGKILLed mid-stream: its clients reconnect to node C with their
    cursors and miss nothing, repeat nothing."""
    store = session_redis().store()
    a, b, c = (spawn_hub(store) for _ in range(3))
    readers = readers_for([b.url, c.url]) + readers_for([c.url])
    for r in readers:
        r.cursor = "start"
    receipts: list[dict[str, Any]] = []
    total = 3 * 100

    async def kill_b_midway() -> None:
        while len(receipts) < total // 3:
            await asyncio.sleep(0.01)
        b.kill()

    pubs = [publish(a.url, f"c.{k}", 100, k, receipts, pause=0.005) for k in range(3)]
    await run_cluster(readers, *pubs, kill_b_midway(),
                      expect=lambda r: total if r.topics == ["c.>"] else 100)
    for r in readers:
        check(r, receipts)
    assert all(r.errors for r in readers[:len(DOORS) * 2]), "B's readers saw B die"


class Balancer:
    """A TCP balancer in front of some nodes, as a load balancer with health
    checks routes: each new connection goes to the first node that accepts
    it; bytes are copied both ways; when one side closes, so does the other."""

    def __init__(self, nodes: list[HubProcess]) -> None:
        self.ports = [n.port for n in nodes]
        self.url = ""
        #: The node port each connection went to, in order.
        self.routed: list[int] = []
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Balancer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for port in self.ports:
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    continue
                self.routed.append(port)
                await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
                return
        finally:
            writer.close()

    @staticmethod
    async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(1 << 16):
                dst.write(data)
                await dst.drain()
        except OSError:
            pass
        finally:
            dst.close()


@pytest.mark.slow
async def test_clients_behind_a_balancer_resume_on_another_node(spawn_hub: Spawn) -> None:
    """``AsyncClient`` subscriptions on every door reach node B through a
    balancer (one each, to see where each one's connections go); B is
    SIGKILLed mid-stream, their reconnects go to node C, and each gets every
    message once, in order."""
    store = session_redis().store()
    a, b, c = (spawn_hub(store) for _ in range(3))
    receipts: list[dict[str, Any]] = []
    total = 3 * 60
    got: dict[str, list[dict[str, Any]]] = {door: [] for door in TRANSPORTS}
    async with contextlib.AsyncExitStack() as stack:
        balancers, subs = [], []
        for door in TRANSPORTS:
            balancers.append(await stack.enter_async_context(Balancer([b, c])))
            hub = await stack.enter_async_context(
                AsyncClient(balancers[-1].url, backoff=BackoffPolicy(0.05, 0.5)))
            subs.append(hub.subscribe("k.>", after="start", transport=door, wait=5,
                                      interval=0.05))

        async def consume(door: str, sub: Any) -> None:
            async with sub:
                async for msg in sub:
                    got[door].append(msg)
                    if len(got[door]) >= total:
                        return

        async def kill_b_midway() -> None:
            while min(len(g) for g in got.values()) < total // 3:
                await asyncio.sleep(0.01)
            assert all(set(balancer.routed) == {b.port} for balancer in balancers)
            assert len(receipts) < total, "B dies while A still publishes"
            b.kill()

        async with asyncio.timeout(60 * UNIT):
            await asyncio.gather(
                *(consume(door, sub) for door, sub in zip(TRANSPORTS, subs, strict=True)),
                *(publish(a.url, f"k.{k}", total // 3, k, receipts, pause=0.01)
                  for k in range(3)),
                kill_b_midway())
    want = [(r["topic"], r["offset"], r["data"]) for r in sorted(receipts, key=seq)]
    for door, balancer in zip(TRANSPORTS, balancers, strict=True):
        assert [(m["topic"], m["offset"], m["data"]) for m in got[door]] == want, door
        # B until it died, C after (a short poll between two requests may
        # not even notice: its client opens a new connection for the next).
        routed = balancer.routed
        assert routed[0] == b.port and routed[-1] == c.port, door
        assert routed == sorted(routed, key=lambda port: port == c.port), door


@pytest.mark.slow
async def test_redis_restart_during_a_publish_loop(spawn_hub: Spawn, tmp_path: Path) -> None:
    """Redis stops and comes back while node A publishes in a loop: every publish
    answered 201 is stored, the others get 503 with a problem document, readers
    are told and then resume, and the nodes recover with no restart."""
    redis = RedisServer(tmp_path, persist=True).start()
    try:
        store = redis.store()
        a, b = spawn_hub(store), spawn_hub(store)
        readers = [Reader([b.url], ["c.>"], door) for door in DOORS]
        for r in readers:
            r.cursor = "start"
        receipts: list[dict[str, Any]] = []
        refused: list[httpx.Response] = []
        outage = asyncio.Event()

        async def publish_loop() -> None:
            async with httpx.AsyncClient(base_url=a.url, timeout=10 * UNIT) as http:
                i = 0
                while len(receipts) < 300:
                    data = {"i": i}
                    i += 1
                    r = await http.post(f"/v1/topics/c.{i % 3}", json=data)
                    if r.status_code == 201:
                        receipts.append({**r.json(), "data": data})
                    else:
                        refused.append(r)
                        outage.set()
                        await asyncio.sleep(0.02)

        async def restart_redis() -> None:
            while len(receipts) < 100:
                await asyncio.sleep(0.01)
            redis.stop(signal.SIGKILL)
            await asyncio.wait_for(outage.wait(), 10 * UNIT)
            async with httpx.AsyncClient(timeout=5 * UNIT) as http:
                assert (await http.get(b.url + "/readyz")).status_code == 503
            await asyncio.sleep(0.5)
            redis.start()

        stored: list[dict[str, Any]] = []

        async def work() -> None:
            await asyncio.gather(publish_loop(), restart_redis())
            # A publish whose answer was lost with Redis may be stored all the
            # same (its client got 503 and may retry with its key): the readers
            # must get what the store has, which holds every acknowledged one.
            async with httpx.AsyncClient(base_url=a.url, timeout=10 * UNIT) as http:
                r = await http.get("/v1/messages", params={
                    "topic": "c.>", "after": "start", "limit": "1000"})
                assert r.status_code == 200, r.text
                stored.extend(r.json()["messages"])

        await run_cluster(readers, work(), expect=lambda r: len(stored) or 10**9)
        assert {seq(r) for r in receipts} <= {seq(m) for m in stored}
        assert len(stored) - len(receipts) <= 1  # at most the one in flight at the crash
        assert refused, "some publishes met the outage"
        for r in refused:
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["code"] == "unavailable"
        for reader in readers:
            check(reader, stored)
            assert reader.errors, f"{reader.door} reader was told of the outage"
        async with httpx.AsyncClient(timeout=5 * UNIT) as http:
            assert (await http.get(b.url + "/readyz")).status_code == 200
    finally:
        redis.stop()
