"""The cluster view of /v1/stats (``cluster``, src/hubbub/core/nodes.py): every
node's summary, summed, on whichever node is asked; a node that leaves drops out."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from websockets.asyncio.client import connect

from hubbub.core.nodes import PREFIX
from tests.conftest import UNIT, HubServer, session_redis, start_server


async def stats(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=10 * UNIT) as http:
        r = await http.get("/v1/stats")
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body


async def until(url: str, ok: Any, seconds: float = 10.0) -> dict[str, Any]:
    """/v1/stats of ``url`` once ``ok(stats)`` holds (the summaries come every 2 s)."""
    async with asyncio.timeout(seconds * UNIT):
        while True:
            s = await stats(url)
            if ok(s):
                return s
            await asyncio.sleep(0.1)


async def test_one_node_is_its_own_cluster(tmp_path: Any) -> None:
    """On a lone hub the cluster part repeats the node's own counters."""
    srv = await start_server(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        async with httpx.AsyncClient(base_url=srv.url, timeout=10 * UNIT) as http:
            for i in range(3):
                assert (await http.post("/v1/topics/s.a", json=i)).status_code == 201
        s = await stats(srv.url)
        c = s["cluster"]
        assert c["nodes"] == 1 and len(c["members"]) == 1
        assert c["published"] == s["published"]["total"] == 3
        assert c["subscriptions"] == s["subscriptions"]
        assert c["open"] == {d: v["open"] for d, v in s["doors"].items()}
        assert c["members"][0]["id"] == srv.app.state.hub.nodes.id
        async with httpx.AsyncClient(base_url=srv.url, timeout=10 * UNIT) as http:
            schema = (await http.get("/openapi.json")).json()["components"]["schemas"]["Stats"]
        assert set(schema["required"]) <= set(s)
        assert set(schema["properties"]["cluster"]["required"]) == set(c)
    finally:
        await srv.stop()


async def test_two_nodes_on_redis_add_up_and_a_stopped_one_leaves() -> None:
    """Publishes on A and a subscriber on B show on both nodes' cluster view; once
    B stops, A's view is A alone again."""
    store = session_redis().store()
    a: HubServer = await start_server(store)
    b: HubServer = await start_server(store)
    try:
        async with httpx.AsyncClient(base_url=a.url, timeout=10 * UNIT) as http:
            for i in range(5):
                assert (await http.post("/v1/topics/s.b", json=i)).status_code == 201
        async with connect(f"{b.ws_url}/v1/ws") as ws:
            await ws.send('{"op":"sub","id":1,"topics":["s.b"]}')
            await ws.recv()

            def both(s: dict[str, Any]) -> bool:
                c = s["cluster"]
                return (c["nodes"] == 2 and c["published"] == 5 and c["open"]["ws"] == 1
                        and c["subscriptions"] == 1)

            on_a, on_b = await until(a.url, both), await until(b.url, both)
            assert on_a["published"]["total"] == 5 and on_a["doors"]["ws"]["open"] == 0
            assert on_b["published"]["total"] == 0 and on_b["doors"]["ws"]["open"] == 1
            ids = {a.app.state.hub.nodes.id, b.app.state.hub.nodes.id}
            assert {m["id"] for m in on_a["cluster"]["members"]} == ids
        await b.stop()
        alone = await until(a.url, lambda s: s["cluster"]["nodes"] == 1)
        assert alone["cluster"]["members"][0]["id"] == a.app.state.hub.nodes.id
        # B deleted its record on the way out (it did not wait to expire).
        hub = a.app.state.hub
        assert [r.key for r in await hub.engine.scan(PREFIX, hub.now())] == [
            PREFIX + hub.nodes.id]
    finally:
        await a.stop()
        await b.stop()
