"""Topic limits and paged listing (issue 18, item 4), on every engine.

Before: any client could create topics without end (150,000 in 9 s), every
pattern read tested every topic of the store, and ``GET /v1/topics`` returned
them all at once (7 MB). Now a publish that would create a topic past
``[limits] topics`` or ``topics_per_namespace`` is refused with 429
``limit-exceeded``, patterns resolve through the hub's topic index, and the
listing is paged with a ``next`` link.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from hubbub.config import Config
from tests.conftest import UNIT, HubServer
from tests.transports.test_ws import JSON_PROTO, ws_client

pytestmark = pytest.mark.timeout(60 * UNIT)


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"limits": {"topics": 6, "topics_per_namespace": 3}})


def refused(r: httpx.Response, limit: str) -> None:
    assert r.status_code == 429, r.text
    doc: dict[str, Any] = r.json()
    assert doc["code"] == "limit-exceeded" and doc["limit"] == limit, doc


async def test_topics_per_namespace_and_in_all(hub_server: HubServer) -> None:
    """The fourth topic of a namespace and the seventh in all are refused, on HTTP,
    in a batch (nothing stored) and on a WebSocket; existing topics take messages."""
    async with hub_server.client() as c:
        for i in range(3):
            assert (await c.post(f"/v1/topics/a.{i}", json=i)).status_code == 201
        refused(await c.post("/v1/topics/a.3", json=3), "topics_per_namespace")
        assert (await c.post("/v1/topics/a.0", json=4)).status_code == 201
        r = await c.post("/v1/publish", json=[{"topic": "b.0", "data": 1},
                                              {"topic": "a.9", "data": 2}])
        refused(r, "topics_per_namespace")
        assert (await c.get("/v1/topics/b.0")).status_code == 404  # nothing stored
        for i in range(3):
            assert (await c.post(f"/v1/topics/b.{i}", json=i)).status_code == 201
        refused(await c.post("/v1/topics/c.0", json=1), "topics")
        # A request to a new topic (with a worker present) creates none either.
        r = await c.post("/v1/groups/w/pull", params={"topic": "c.svc", "lease": 60})
        assert r.status_code == 200, r.text
        await hub_server.until_responder("c.svc")
        refused(await c.post("/v1/requests/c.svc?timeout=1", json=1), "topics")
    async with ws_client(hub_server, JSON_PROTO) as ws:
        reply = await ws.op({"op": "pub", "id": 1, "topic": "c.1", "data": 1})
        assert reply["op"] == "err" and reply["code"] == "limit-exceeded", reply
        await ws.ok({"op": "pub", "id": 2, "topic": "b.1", "data": 1})


async def test_topics_are_listed_in_pages(hub_server: HubServer) -> None:
    """``GET /v1/topics?limit=`` pages in name order; ``next`` (and ``Link``) lead
    on; the last page has none; a pattern pages too."""
    async with hub_server.client() as c:
        for name in ("p.c", "p.a", "q.b", "p.b", "q.a"):
            assert (await c.post(f"/v1/topics/{name}", json=1)).status_code == 201
        seen: list[str] = []
        url: str | None = "/v1/topics?limit=2"
        while url is not None:
            r = await c.get(url)
            assert r.status_code == 200, r.text
            body = r.json()
            seen += [t["topic"] for t in body["topics"]]
            url = body.get("next")
            if url is not None:
                assert r.headers["link"] == f'<{url}>; rel="next"'
                assert len(body["topics"]) == 2
            else:
                assert "link" not in r.headers
        assert seen == ["p.a", "p.b", "p.c", "q.a", "q.b"]
        r = await c.get("/v1/topics", params={"pattern": "p.*", "after": "p.a"})
        assert [t["topic"] for t in r.json()["topics"]] == ["p.b", "p.c"]
        for bad in ({"after": "a..b"}, {"limit": "0"}, {"limit": "100000"}):
            r = await c.get("/v1/topics", params=bad)
            assert r.status_code == 400, (bad, r.text)


async def test_pattern_reads_see_new_topics(hub_server: HubServer) -> None:
    """A pattern poll finds topics made after the hub started (through the index)
    and goes on from its cursor."""
    async with hub_server.client() as c:
        await c.post("/v1/topics/in.a", json=1)
        r = await c.get("/v1/messages", params={"topic": "in.*", "after": "start"})
        page = r.json()
        assert [m["data"] for m in page["messages"]] == [1]
        await c.post("/v1/topics/in.b", json=2)
        await c.post("/v1/topics/out.c", json=3)
        r = await c.get("/v1/messages", params={"topic": "in.*", "after": page["cursor"]})
        assert [m["data"] for m in r.json()["messages"]] == [2]
