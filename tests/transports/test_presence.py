"""Presence on a real server: entries over HTTP, join and leave events on every door.

Present clients are WebSocket and SSE subscribers; watchers follow the
events topic ``presence.<topic>`` over WebSocket and SSE. A killed client is
a real child process holding a WebSocket, ended with SIGKILL; a killed node
is a real ``hubbub serve`` process, ended with SIGKILL, whose entries another
node expires.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from hubbub.config import Config
from tests.conftest import UNIT, HubProcess, HubServer, session_redis
from tests.transports.test_ws import Client, ws_client

Spawn = Callable[..., HubProcess]
TTL = 1.5
CONFIG = {"namespaces": {"chat": {"presence": True}}, "server": {"presence_ttl": TTL}}


@pytest.fixture
def config() -> Config:
    return Config.from_dict(CONFIG)


@contextlib.asynccontextmanager
async def sse(client: httpx.AsyncClient, path: str, **kw: Any
              ) -> AsyncIterator[AsyncIterator[ServerSentEvent]]:
    async with (
        aconnect_sse(client, "GET", path, **kw) as source,
        contextlib.aclosing(source.aiter_sse()) as events,
    ):
        yield events


async def sse_events(events: AsyncIterator[ServerSentEvent], n: int) -> list[dict[str, Any]]:
    """The next ``n`` presence events of an SSE stream over presence topics."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(5 * UNIT):
        while len(out) < n:
            ev = await anext(events)
            if ev.event == "message":
                out.append(json.loads(ev.data)["data"])
    return out


async def ws_events(c: Client, n: int, wait: float = 5 * UNIT) -> list[dict[str, Any]]:
    """The next ``n`` presence events pushed to a WebSocket watcher."""
    out = []
    async with asyncio.timeout(wait):
        while len(out) < n:
            frame = await c.next(wait)
            assert frame["op"] == "msg", frame
            out.append(frame["data"])
    return out


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(e["event"], e["client"], e.get("reason")) for e in events]


async def present(client: httpx.AsyncClient, topic: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/topics/{topic}/presence")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["topic"] == topic and body["count"] == len(body["present"])
    entries: list[dict[str, Any]] = body["present"]
    return entries


@pytest.mark.smoke
@pytest.mark.sockets
async def test_joins_and_leaves_on_websocket_and_sse(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """A WebSocket and an SSE subscriber join and leave; watchers on both doors see the
    same events, and the presence list follows."""
    async with ws_client(hub_server) as watcher, \
            sse(client, "/v1/events", params={"topic": "presence.chat.>"}) as sse_watcher:
        await watcher.ok({"op": "sub", "id": 1, "topics": ["presence.chat.>"]})
        assert (await anext(sse_watcher)).event == "ready"
        async with hub_server.client() as bob_http, ws_client(hub_server) as alice:
            ok = await alice.ok({"op": "sub", "id": 1, "topics": ["chat.room1"],
                                 "client": "alice", "info": {"name": "Alice"}})
            alice_conn = ok["conn"]
            async with sse(bob_http, "/v1/topics/chat.room1/events",
                           params={"client": "bob", "info": '{"away":false}'}) as bob:
                ready = await anext(bob)
                assert ready.event == "ready"
                bob_conn = json.loads(ready.data)["conn"]
                entries = await present(client, "chat.room1")
                assert sorted((e["conn"], e["client"], e["info"]) for e in entries) == sorted(
                    [(alice_conn, "alice", {"name": "Alice"}),
                     (bob_conn, "bob", {"away": False})])
                await alice.ok({"op": "unsub", "id": 2, "sub": ok["sub"]})
                assert [e["conn"] for e in await present(client, "chat.room1")] == [bob_conn]
        expected = [("join", "alice", None), ("join", "bob", None), ("leave", "alice", "unsub"),
                    ("leave", "bob", "closed")]
        seen_ws = await ws_events(watcher, 4)
        seen_sse = await sse_events(sse_watcher, 4)
    assert summary(seen_ws) == expected
    assert seen_sse == seen_ws
    assert all(e["topic"] == "chat.room1" for e in seen_ws)
    assert [e["conn"] for e in seen_ws] == [alice_conn, bob_conn, alice_conn, bob_conn]
    assert await present(client, "chat.room1") == []
    # The events are a topic like any other: a late reader gets them from its history.
    r = await client.get("/v1/topics/presence.chat.room1/messages", params={"after": "start"})
    assert [m["data"] for m in r.json()["messages"]] == seen_ws


@pytest.mark.sockets
async def test_only_exact_topics_with_presence_on_count(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Patterns, other namespaces and group workers are not present; one connection
    subscribed twice to a topic is one entry, left with its last subscription."""
    async with ws_client(hub_server) as c:
        ok = await c.ok({"op": "sub", "id": 1, "topics": ["chat.*", "news.a"]})
        assert "conn" not in ok
        one = await c.ok({"op": "sub", "id": 2, "topics": ["chat.r"]})
        two = await c.ok({"op": "sub", "id": 3, "topics": ["chat.r", "chat.s"]})
        assert one["conn"] == two["conn"]
        assert len(await present(client, "chat.r")) == 1
        await c.ok({"op": "unsub", "id": 4, "sub": one["sub"]})
        assert len(await present(client, "chat.r")) == 1
        await c.ok({"op": "unsub", "id": 5, "sub": two["sub"]})
        assert await present(client, "chat.r") == []
        assert await present(client, "chat.s") == []


@pytest.mark.sockets
async def test_a_killed_client_leaves(hub_server: HubServer, client: httpx.AsyncClient) -> None:
    """SIGKILL of a process holding a WebSocket: its entry goes, with a leave (closed)."""
    script = textwrap.dedent(f"""
        import asyncio, json, sys
        from websockets.asyncio.client import connect

        async def main():
            async with connect({hub_server.ws_url + '/v1/ws'!r}, proxy=None) as ws:
                await ws.send(json.dumps({{"op": "sub", "id": 1, "topics": ["chat.kill"],
                                           "client": "victim"}}))
                print(json.loads(await ws.recv())["conn"], flush=True)
                await asyncio.sleep(3600)

        asyncio.run(main())
    """)
    async with ws_client(hub_server) as watcher:
        await watcher.ok({"op": "sub", "id": 1, "topics": ["presence.chat.kill"]})
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(10 * UNIT):
                conn = (await proc.stdout.readline()).decode().strip()
            assert [e["conn"] for e in await present(client, "chat.kill")] == [conn]
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        join, leave = await ws_events(watcher, 2)
    assert (join["event"], join["conn"], join["client"]) == ("join", conn, "victim")
    assert (leave["event"], leave["conn"], leave["reason"]) == ("leave", conn, "closed")
    assert await present(client, "chat.kill") == []


@pytest.mark.sockets
async def test_bad_presence_input_changes_nothing(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Presence off, malformed topics, clients and infos: clear errors, nobody joins."""
    r = await client.get("/v1/topics/news.a/presence")
    assert r.status_code == 404 and r.json()["code"] == "not-found"
    assert r.json()["field"] == "topic"
    r = await client.get("/v1/topics/chat..a/presence")
    assert r.status_code == 400 and r.json()["code"] == "invalid-topic"
    async with ws_client(hub_server) as c:
        for i, extra in enumerate([{"client": ""}, {"client": "x" * 65}, {"client": 7},
                                   {"info": "x" * 2000}]):
            got = await c.op({"op": "sub", "id": i, "topics": ["chat.bad"], **extra})
            assert got["op"] == "err" and got["code"] == "invalid-request", got
            assert got["field"] == next(iter(extra))
        got = await c.op({"op": "sub", "id": "g", "topics": ["chat.bad"], "group": "g",
                          "client": "me"})
        assert got["op"] == "err" and got["field"] == "client"
        got = await c.op({"op": "sub", "id": "long", "topics": ["chat." + "x" * 246]})
        assert got["op"] == "err" and got["code"] == "invalid-topic"
    for params in ({"info": "{"}, {"client": "\x01"}, {"info": json.dumps("x" * 2000)}):
        r = await client.get("/v1/topics/chat.bad/events", params=params)
        assert r.status_code == 400 and r.json()["field"] in ("info", "client"), r.text
    assert await present(client, "chat.bad") == []
    r = await client.get("/v1/topics/presence.chat.bad/messages", params={"after": "start"})
    assert r.json()["messages"] == []


# -- nodes that die ------------------------------------------------------------------


def config_file(tmp_path: Path) -> str:
    path = tmp_path / "hubbub.toml"
    path.write_text(f'[namespaces.chat]\npresence = true\n[server]\npresence_ttl = {TTL}\n')
    return str(path)


async def join_and_hold(url: str, topic: str, client: str) -> tuple[asyncio.Task[None], str]:
    """A WebSocket subscriber present on ``topic`` until its node dies; its conn id."""
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def hold() -> None:
        with contextlib.suppress(Exception):
            async with ws_client(_Srv(url)) as c:
                got.set_result((await c.ok({"op": "sub", "id": 1, "topics": [topic],
                                            "client": client}))["conn"])
                while True:
                    await c.recv(3600)

    task = asyncio.create_task(hold())
    async with asyncio.timeout(10 * UNIT):
        return task, await got


class _Srv:
    """What ``ws_client`` needs of a server: its ws URL."""

    def __init__(self, url: str) -> None:
        self.ws_url = url.replace("http://", "ws://")


async def wait_for_events(url: str, topic: str, n: int) -> list[dict[str, Any]]:
    """The first ``n`` presence events of ``topic`` (long polls from the start)."""
    out: list[dict[str, Any]] = []
    after = "start"
    async with httpx.AsyncClient(base_url=url, timeout=10 * UNIT) as http, \
            asyncio.timeout(15 * UNIT):
        while len(out) < n:
            r = await http.get(f"/v1/topics/presence.{topic}/messages",
                               params={"after": after, "wait": 1})
            assert r.status_code == 200, r.text
            out += [m["data"] for m in r.json()["messages"]]
            after = r.json()["cursor"]
    return out


@pytest.mark.slow
async def test_a_killed_nodes_entries_expire_on_restart_sqlite(
    spawn_hub: Spawn, tmp_path: Path
) -> None:
    """SIGKILL of the hub (sqlite): its entries outlive it in the store, and the restarted
    hub expires them, with one leave (expired) each."""
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    node = spawn_hub(store, "--config", config_file(tmp_path))
    holder, conn = await join_and_hold(node.url, "chat.crash", "c1")
    node.kill()
    await asyncio.wait_for(holder, 5 * UNIT)
    again = spawn_hub(store, "--config", config_file(tmp_path), port=node.port)
    join, leave = await wait_for_events(again.url, "chat.crash", 2)
    assert (join["event"], join["conn"]) == ("join", conn)
    assert (leave["event"], leave["conn"], leave["reason"]) == ("leave", conn, "expired")
    async with httpx.AsyncClient(base_url=again.url) as http:
        assert await present(http, "chat.crash") == []
        await asyncio.sleep(TTL)  # further sweeps say nothing more
        assert len(await wait_for_events(again.url, "chat.crash", 2)) == 2


@pytest.mark.slow
async def test_a_killed_nodes_entries_expire_on_the_other_nodes_redis(
    spawn_hub: Spawn, tmp_path: Path
) -> None:
    """Two nodes on one Redis: the entry of a client of node a is listed by node b; when
    a is killed, the other nodes expire it with exactly one leave."""
    store = session_redis().store()
    a, b, c = (spawn_hub(store, "--config", config_file(tmp_path)) for _ in range(3))
    holder, conn = await join_and_hold(a.url, "chat.cluster", "c2")
    async with httpx.AsyncClient(base_url=b.url) as http:
        assert [e["conn"] for e in await present(http, "chat.cluster")] == [conn]
        a.kill()
        await asyncio.wait_for(holder, 5 * UNIT)
        join, leave = await wait_for_events(b.url, "chat.cluster", 2)
        assert (leave["event"], leave["conn"], leave["reason"]) == ("leave", conn, "expired")
        assert join["event"] == "join"
        assert await present(http, "chat.cluster") == []
        await asyncio.sleep(2 * TTL)  # b and c both sweep: still one leave
        r = await http.get("/v1/topics/presence.chat.cluster/messages", params={"after": "start"})
        assert len(r.json()["messages"]) == 2
