"""Operators' features across a cluster: three ``hubbub serve`` nodes on one Redis.

What one node answers must hold for the whole cluster, so what it needs lives
in the engine: whether a request's topic has responders (any node's group
workers count), the pages of a topic read from its end, every node's
connections (listed and disconnected from any node), presence entries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from hubbub.client import AsyncClient
from hubbub.protocol.errors import NoResponders, ResponderError
from tests.conftest import UNIT, HubProcess, session_redis
from tests.transports.test_ws import Client

Spawn = Callable[..., HubProcess]


async def test_requests_fail_fast_and_are_answered_across_nodes(spawn_hub: Spawn) -> None:
    """No responder anywhere: 503 at once on every node. A responder on node B answers
    callers on nodes A and C; its handler's error reaches a caller on A at once."""
    store = session_redis().store()
    a, b, c = (spawn_hub(store) for _ in range(3))

    def handler(data: Any) -> Any:
        return {"half": 1 / data}  # 0 raises ZeroDivisionError

    async with AsyncClient(a.url) as on_a, AsyncClient(b.url) as on_b, \
            AsyncClient(c.url) as on_c, asyncio.timeout(30 * UNIT):
        for caller in (on_a, on_b, on_c):
            with pytest.raises(NoResponders):
                await caller.request("svc.half", 2, timeout=60)
        responder = asyncio.create_task(on_b.respond("svc.half", handler))
        try:
            while True:  # until node B's worker is known to the cluster
                try:
                    reply = await on_c.request("svc.half", 2, timeout=10 * UNIT)
                    break
                except NoResponders:
                    await asyncio.sleep(0.02)
            assert reply["data"] == {"half": 0.5}
            assert (await on_a.request("svc.half", 4, timeout=10 * UNIT))["data"] == {
                "half": 0.25}
            with pytest.raises(ResponderError) as caught:
                await on_a.request("svc.half", 0, timeout=60)
            assert caught.value.message.startswith("ZeroDivisionError")
        finally:
            responder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await responder


async def test_history_from_the_end_on_any_node(spawn_hub: Spawn) -> None:
    """Published on node A, read back from the end on nodes B and C: the same pages;
    B's cursor follows on with what A stores next."""
    store = session_redis().store()
    a, b, c = (spawn_hub(store) for _ in range(3))
    async with AsyncClient(a.url) as on_a, AsyncClient(b.url) as on_b, \
            AsyncClient(c.url) as on_c, asyncio.timeout(30 * UNIT):
        for i in range(7):
            await on_a.publish("log.x", i)
        pages = []
        for reader in (on_b, on_c):
            seen: list[Any] = []
            page = await reader.history("log.x", limit=3)
            first = page
            while True:
                seen[:0] = [m["data"] for m in page["messages"]]
                if page["prev"] is None:
                    break
                page = await reader.history("log.x", before=page["prev"], limit=3)
            assert seen == list(range(7))
            pages.append(first)
        assert pages[0] == pages[1]
        await on_a.publish("log.x", 7)
        r = await on_b.http.get("/v1/topics/log.x/messages",
                                params={"after": pages[0]["cursor"]})
        assert [m["data"] for m in r.json()["messages"]] == [7]


async def test_admin_sees_and_disconnects_connections_of_every_node(
    spawn_hub: Spawn, tmp_path: Any
) -> None:
    """A WebSocket on node B and an SSE stream on node C are listed by node A; A
    disconnects both (B closes its WebSocket with 4010, C ends its stream); a presence
    entry held by B is listed and dropped from C."""
    config = tmp_path / "hubbub.toml"
    config.write_text("[namespaces.room]\npresence = true\n")
    store = session_redis().store()
    a, b, c = (spawn_hub(store, "--config", str(config)) for _ in range(3))
    async with AsyncClient(a.url) as on_a, AsyncClient(c.url) as on_c, \
            connect(b.url.replace("http", "ws") + "/v1/ws", proxy=None) as raw_ws, \
            aconnect_sse(on_c.http, "GET", "/v1/topics/news.x/events") as sse, \
            asyncio.timeout(30 * UNIT):
        ws = Client(raw_ws)
        conn = (await ws.ok({"op": "sub", "id": 1, "topics": ["room.a"]}))["conn"]
        events = sse.aiter_sse()
        assert (await anext(events)).event == "ready"
        while True:  # the other nodes' lists come in within a moment
            listed = (await on_a.admin.connections())["connections"]
            if len(listed) == 2 and all(x["subscriptions"] for x in listed):
                break
            await asyncio.sleep(0.05)
        by_door = {x["door"]: x for x in listed}
        assert by_door["ws"]["id"] == conn and by_door["ws"]["subscriptions"] == ["room.a"]
        assert by_door["sse"]["subscriptions"] == ["news.x"]
        assert by_door["ws"]["node"] != by_door["sse"]["node"]
        entries = (await on_c.admin.presence())["present"]
        assert [(e["topic"], e["conn"]) for e in entries] == [("room.a", conn)]
        await on_c.admin.drop_presence("room.a", conn)
        assert (await on_a.admin.presence())["present"] == []
        assert await on_a.admin.disconnect(conn)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await raw_ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4010
        assert await on_a.admin.disconnect(by_door["sse"]["id"])
        rest = [ev async for ev in events]
        assert rest[-1].event == "close" and "reason" in rest[-1].json()
        assert (await on_a.admin.connections())["connections"] == []


async def test_topic_deleted_on_one_node_ends_its_readers_on_another(
    spawn_hub: Spawn,
) -> None:
    """Node A deletes a topic an SSE reader on node B follows: B ends the stream with an
    error event and its cursor; resuming from it on node C says the epoch gap."""
    store = session_redis().store()
    a, b, c = (spawn_hub(store) for _ in range(3))
    async with AsyncClient(a.url) as on_a, AsyncClient(b.url) as on_b, \
            AsyncClient(c.url) as on_c, asyncio.timeout(30 * UNIT):
        for i in range(3):
            await on_a.publish("gone.t", i)
        async with aconnect_sse(on_b.http, "GET", "/v1/topics/gone.t/events",
                                params={"after": "start"}) as sse:
            events = sse.aiter_sse()
            seen = [await anext(events) for _ in range(4)]  # ready, then 3 messages
            assert [e.event for e in seen] == ["ready", "message", "message", "message"]
            await on_a.admin.delete_topic("gone.t")
            rest = [ev async for ev in events]
        assert rest[-1].event == "error"
        cursor = rest[-1].json()["cursor"]
        r = await on_c.http.get("/v1/topics/gone.t/messages", params={"after": cursor})
        assert r.status_code == 409 and r.json()["reason"] == "epoch"
