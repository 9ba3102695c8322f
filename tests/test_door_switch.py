"""The door switch: one reader moves WebSocket -> SSE -> long poll -> short poll.

It carries only its cursor from door to door. What it reads must equal exactly
what was published: nothing lost, nothing twice, in order. The same holds over
a wildcard subscription while new matching topics keep appearing.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from tests.conftest import UNIT, HubServer

TOTAL = 240


async def publisher(client: httpx.AsyncClient, topic_of: Any, done: asyncio.Event) -> list[Any]:
    """Publish TOTAL messages, a few at a time; returns (topic, value) in publish order."""
    sent = []
    for i in range(TOTAL):
        topic = topic_of(i)
        r = await client.post(f"/v1/topics/{topic}", json={"n": i})
        assert r.status_code == 201, r.text
        sent.append((topic, i))
        if i % 8 == 0:
            await asyncio.sleep(0.005)
    done.set()
    return sent


async def read_ws(srv: HubServer, topics: list[str], after: str, n: int) -> tuple[list[Any], str]:
    got: list[Any] = []
    cursor = after
    async with connect(srv.ws_url + "/v1/ws", subprotocols=["hubbub.v1.json"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"op": "sub", "id": 1, "topics": topics, "after": after}))
        while len(got) < n:
            frame = json.loads(await ws.recv())
            assert frame["op"] in ("ok", "msg"), frame
            if frame["op"] == "msg":
                got.append((frame["topic"], frame["data"]["n"]))
                cursor = frame["cursor"]
    return got, cursor


async def read_sse(
    srv: HubServer, client: httpx.AsyncClient, path: str, after: str, n: int
) -> tuple[list[Any], str]:
    got: list[Any] = []
    cursor = after
    async with aconnect_sse(client, "GET", path, headers={"Last-Event-ID": after}) as source:
        async for event in source.aiter_sse():
            assert event.event in ("ready", "message"), event
            if event.event == "message":
                msg = json.loads(event.data)
                assert msg["cursor"] == event.id
                got.append((msg["topic"], msg["data"]["n"]))
                cursor = event.id
                if len(got) >= n:
                    break
    return got, cursor


async def read_polls(
    client: httpx.AsyncClient, path: str, params: list[tuple[str, str]], after: str,
    wait: float, until: Any,
) -> tuple[list[Any], str]:
    got: list[Any] = []
    cursor = after
    while not until(got):
        q = [*params, ("after", cursor), ("limit", "7")]
        if wait:
            q.append(("wait", str(wait)))
        r = await client.get(path, params=q)
        assert r.status_code == 200, r.text
        body = r.json()
        assert not body.get("gaps")
        got += [(m["topic"], m["data"]["n"]) for m in body["messages"]]
        cursor = body["cursor"]
    return got, cursor


async def switch_doors(
    srv: HubServer, topics: list[str], sse_path: str, poll_path: str,
    params: list[tuple[str, str]], topic_of: Any,
) -> None:
    async with srv.client() as pub_client, srv.client() as client:
        done = asyncio.Event()
        first = await client.get(poll_path, params=[*params, ("after", "end")])
        start = first.json()["cursor"]
        pub_task = asyncio.create_task(publisher(pub_client, topic_of, done))
        async with asyncio.timeout(60 * UNIT):
            a, cursor = await read_ws(srv, topics, start, 50)
            b, cursor = await read_sse(srv, client, sse_path, cursor, 50)
            c, cursor = await read_polls(
                client, poll_path, params, cursor, 2 * UNIT, lambda got: len(got) >= 50
            )
            sent = await pub_task
            d, cursor = await read_polls(
                client, poll_path, params, cursor, 0,
                lambda got: len(a) + len(b) + len(c) + len(got) >= TOTAL,
            )
        assert a + b + c + d == sent
        # Nothing more: the last cursor is exactly at the end.
        r = await client.get(poll_path, params=[*params, ("after", cursor)])
        assert r.json()["messages"] == []


async def test_door_switch_single_topic(hub_server: HubServer) -> None:
    """WS, then SSE, then long polls, then short polls over one topic: exact."""
    await switch_doors(
        hub_server, ["door.one"], "/v1/topics/door.one/events",
        "/v1/topics/door.one/messages", [], lambda i: "door.one",
    )


async def test_door_switch_wildcard_with_new_topics(hub_server: HubServer) -> None:
    """The same over door.* while new matching topics appear (and others don't match)."""
    async with hub_server.client() as c:
        await c.post("/v1/topics/door.t0", json={"n": -1})
        await c.post("/v1/topics/nodoor.x", json={"n": -2})
    await switch_doors(
        hub_server, ["door.*"], "/v1/events?topic=door.*", "/v1/messages",
        [("topic", "door.*")], lambda i: f"door.t{i // 20}",
    )
