"""``GET /v1/topics/{topic}/messages?before=end|CURSOR&limit=N`` on a real server, every
engine, and ``AsyncClient.history()``: the newest messages first, paging back."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from hubbub.client import AsyncClient
from hubbub.protocol.errors import InvalidCursor
from tests.conftest import UNIT, HubServer


async def publish(client: httpx.AsyncClient, topic: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        r = await client.post(f"/v1/topics/{topic}", json={"n": i})
        assert r.status_code == 201, r.text


async def history(client: httpx.AsyncClient, topic: str, **params: Any) -> dict[str, Any]:
    r = await client.get(f"/v1/topics/{topic}/messages", params=params)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


async def test_the_newest_messages_oldest_first_then_back_and_on(
    client: httpx.AsyncClient,
) -> None:
    """before=end&limit=3: the last three, oldest first; prev pages back to the first
    message (then null); after=cursor follows on with what came later, once."""
    await publish(client, "chat.room1", 8)
    page = await history(client, "chat.room1", before="end", limit=3)
    assert [m["data"]["n"] for m in page["messages"]] == [5, 6, 7]
    assert set(page) == {"messages", "prev", "cursor"}
    assert page["cursor"] == page["messages"][-1]["cursor"]
    assert set(page["messages"][0]) == {"topic", "offset", "cursor", "time", "id", "data"}
    seen = [m["data"]["n"] for m in page["messages"]]
    back = page
    while back["prev"] is not None:
        back = await history(client, "chat.room1", before=back["prev"], limit=3)
        seen[:0] = [m["data"]["n"] for m in back["messages"]]
    assert seen == list(range(8))
    await publish(client, "chat.room1", 2, start=8)
    r = await client.get("/v1/topics/chat.room1/messages", params={"after": page["cursor"]})
    assert [m["data"]["n"] for m in r.json()["messages"]] == [8, 9]


async def test_follow_live_from_the_cursor_of_before_end(client: httpx.AsyncClient) -> None:
    """A long poll from before=end's cursor gets the next message, not the page again;
    on an empty topic before=end is empty and its cursor still follows live."""
    page = await history(client, "news.x", before="end")
    assert page["messages"] == [] and page["prev"] is None
    async with asyncio.timeout(10 * UNIT):
        poll = asyncio.create_task(client.get(
            "/v1/topics/news.x/messages", params={"after": page["cursor"], "wait": 5 * UNIT}))
        await asyncio.sleep(0.05)
        await publish(client, "news.x", 1)
        r = await poll
    assert [m["data"]["n"] for m in r.json()["messages"]] == [0]


@pytest.mark.parametrize(("params", "field"), [
    ({"before": "end", "after": "start"}, "after"),
    ({"before": "end", "wait": "1"}, "wait"),
    ({"before": "end", "limit": "0"}, "limit"),
    ({"before": "end", "limit": "x"}, "limit"),
    ({"before": "junk"}, "before"),
    ({"before": "start"}, "before"),
])
async def test_bad_history_queries_are_400(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    """Mixed with after or wait, a bad limit or cursor: 400 naming the field."""
    await publish(client, "h.t", 1)
    r = await client.get("/v1/topics/h.t/messages", params=params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == field


async def test_another_topics_cursor_is_refused(client: httpx.AsyncClient) -> None:
    """A cursor of another topic: 400 invalid-cursor on before."""
    await publish(client, "h.a", 1)
    await publish(client, "h.b", 1)
    b = await history(client, "h.b", before="end")
    r = await client.get("/v1/topics/h.a/messages", params={"before": b["cursor"]})
    assert r.status_code == 400 and r.json()["code"] == "invalid-cursor"
    assert r.json()["field"] == "before"


@pytest.mark.sockets
async def test_client_history(hub_server: HubServer) -> None:
    """AsyncClient.history() pages back the same way; a bad cursor raises InvalidCursor."""
    async with AsyncClient(hub_server.url) as hub:
        for i in range(5):
            await hub.publish("c.h", i)
        page = await hub.history("c.h", limit=2)
        assert [m["data"] for m in page["messages"]] == [3, 4]
        older = await hub.history("c.h", before=page["prev"], limit=10)
        assert [m["data"] for m in older["messages"]] == [0, 1, 2] and older["prev"] is None
        with pytest.raises(InvalidCursor):
            await hub.history("c.h", before="junk")
