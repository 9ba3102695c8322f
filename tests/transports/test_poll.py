"""The polling doors: short polls page through history, long polls wait for the next message.

``GET /v1/topics/{topic}/messages`` reads one topic and answers 409 on lost
history; ``GET /v1/messages`` reads several topics and patterns and reports
gaps in-band. Real server, real sockets, every engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest

from hubbub.config import Config
from tests.conftest import UNIT, HubServer


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"small": {"history_size": 3}}})


async def publish(client: httpx.AsyncClient, topic: str, value: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/topics/{topic}", json=value)
    assert r.status_code == 201, r.text
    receipt: dict[str, Any] = r.json()
    return receipt


async def poll(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    r = await client.get(path, params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def wait_for_subscribers(srv: HubServer, n: int) -> None:
    async with asyncio.timeout(5 * UNIT):
        while True:
            if len(srv.hub.fanout) == n:
                return
            await asyncio.sleep(0.005)


@pytest.mark.smoke
@pytest.mark.sockets
async def test_short_poll_pages_with_cursors(client: httpx.AsyncClient) -> None:
    """Following each page's cursor reads every message once, in order, then nothing."""
    for i in range(10):
        await publish(client, "page.t", i)
    seen: list[int] = []
    pages: list[int] = []
    cursor = None
    while True:
        params = {"limit": 3} if cursor is None else {"limit": 3, "after": cursor}
        page = await poll(client, "/v1/topics/page.t/messages", **params)
        if not page["messages"]:
            assert page["cursor"] == cursor  # an empty page stays where it was
            break
        pages.append(len(page["messages"]))
        seen += [m["data"] for m in page["messages"]]
        assert page["cursor"] == page["messages"][-1]["cursor"]
        cursor = page["cursor"]
    assert seen == list(range(10)) and pages == [3, 3, 3, 1]
    assert "gaps" not in page


async def test_after_end_and_start(client: httpx.AsyncClient) -> None:
    """after=end reads nothing now but everything later; no after means the start."""
    await publish(client, "ends.t", "old")
    end = await poll(client, "/v1/topics/ends.t/messages", after="end")
    assert end["messages"] == []
    await publish(client, "ends.t", "new")
    later = await poll(client, "/v1/topics/ends.t/messages", after=end["cursor"])
    assert [m["data"] for m in later["messages"]] == ["new"]
    everything = await poll(client, "/v1/topics/ends.t/messages", after="")
    assert [m["data"] for m in everything["messages"]] == ["old", "new"]
    unknown = await poll(client, "/v1/topics/ends.none/messages")
    assert unknown["messages"] == [] and unknown["cursor"]


@pytest.mark.smoke
@pytest.mark.sockets
async def test_long_poll_wakes_on_publish(client: httpx.AsyncClient, hub_server: HubServer) -> None:
    """A waiting long poll answers within a fraction of a second of a publish."""
    first = await publish(client, "lp.t", 0)
    async with hub_server.client() as other, asyncio.timeout(10 * UNIT):
        task = asyncio.create_task(other.get(
            "/v1/topics/lp.t/messages", params={"after": first["cursor"], "wait": 30}
        ))
        await wait_for_subscribers(hub_server, 1)
        await publish(client, "lp.t", 1)
        published = time.monotonic()
        r = await task
        woke_after = time.monotonic() - published
    assert r.status_code == 200
    assert [m["data"] for m in r.json()["messages"]] == [1]
    assert woke_after < 1.0 * UNIT


async def test_long_poll_times_out_empty(client: httpx.AsyncClient) -> None:
    """A long poll with nothing to read answers empty after wait, with the same cursor."""
    receipt = await publish(client, "lp.quiet", 0)
    start = time.monotonic()
    page = await poll(client, "/v1/topics/lp.quiet/messages", after=receipt["cursor"], wait=0.3)
    elapsed = time.monotonic() - start
    assert page == {"messages": [], "cursor": receipt["cursor"]}
    assert 0.25 <= elapsed < 5 * UNIT


async def test_long_poll_client_leaving_frees_subscription(hub_server: HubServer) -> None:
    """A long poll whose client hangs up stops waiting: its subscription is closed."""
    async with hub_server.client() as c:
        task = asyncio.create_task(c.get("/v1/topics/lp.gone/messages", params={"wait": 50}))
        await wait_for_subscribers(hub_server, 1)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await wait_for_subscribers(hub_server, 0)


async def test_multi_topic_poll_over_patterns(
    client: httpx.AsyncClient, hub_server: HubServer
) -> None:
    """A poll over patterns sees new matching topics as they appear, in publish order."""
    path = "/v1/messages"
    topics = ["multi.*", "solo.x"]
    await publish(client, "multi.a", "a1")
    page = await poll(client, path, topic=topics)
    assert [m["data"] for m in page["messages"]] == ["a1"] and page["gaps"] == []
    await publish(client, "multi.b", "b1")  # a topic that did not exist before
    await publish(client, "nomatch.z", "no")
    await publish(client, "solo.x", "x1")
    await publish(client, "multi.a", "a2")
    page = await poll(client, path, topic=topics, after=page["cursor"])
    assert [(m["topic"], m["data"]) for m in page["messages"]] == [
        ("multi.b", "b1"), ("solo.x", "x1"), ("multi.a", "a2")
    ]
    # A long poll over a pattern wakes for a brand-new topic.
    async with hub_server.client() as other, asyncio.timeout(10 * UNIT):
        task = asyncio.create_task(other.get(
            path, params={"topic": topics, "after": page["cursor"], "wait": 30}
        ))
        await wait_for_subscribers(hub_server, 1)
        await publish(client, "multi.new", "n1")
        r = await task
    assert [m["data"] for m in r.json()["messages"]] == ["n1"]


async def test_gap_on_one_topic_is_409(client: httpx.AsyncClient) -> None:
    """A cursor behind trimmed history gets 409 with the lost range and a cursor to go on."""
    receipts = [await publish(client, "small.t", i) for i in range(5)]
    r = await client.get("/v1/topics/small.t/messages", params={"after": receipts[0]["cursor"]})
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == "gap" and problem["field"] == "after"
    assert problem["topic"] == "small.t" and problem["reason"] == "trimmed"
    assert (problem["from"], problem["to"]) == (2, 2)
    page = await poll(client, "/v1/topics/small.t/messages", after=problem["cursor"])
    assert [m["data"] for m in page["messages"]] == [2, 3, 4]
    # Without a cursor the poll starts at the retained start: no gap to speak of.
    page = await poll(client, "/v1/topics/small.t/messages")
    assert [m["data"] for m in page["messages"]] == [2, 3, 4]


async def test_gaps_in_band_on_multi_topic_poll(client: httpx.AsyncClient) -> None:
    """Over several topics a gap comes in-band, next to the messages that follow it."""
    first = await publish(client, "small.g", 0)
    for i in range(1, 6):
        await publish(client, "small.g", i)
    await publish(client, "keep.x", "x")
    page = await poll(client, "/v1/messages", topic=["small.*", "keep.x"], after=first["cursor"])
    assert [m["data"] for m in page["messages"]] == [3, 4, 5, "x"]
    (gap,) = page["gaps"]
    assert gap["topic"] == "small.g" and gap["to"] == 3 and gap["reason"] == "trimmed"
    assert gap["from"] <= 2
    again = await poll(client, "/v1/messages", topic=["small.*", "keep.x"], after=page["cursor"])
    assert again["messages"] == [] and again["gaps"] == []


@pytest.mark.parametrize(
    ("params", "code", "field"),
    [
        ({"limit": 0}, "invalid-request", "limit"),
        ({"limit": 1001}, "invalid-request", "limit"),
        ({"limit": "ten"}, "invalid-request", "limit"),
        ({"limit": "1.5"}, "invalid-request", "limit"),
        ({"wait": -1}, "invalid-request", "wait"),
        ({"wait": 61}, "invalid-request", "wait"),
        ({"wait": "nan"}, "invalid-request", "wait"),
        ({"wait": "1e3"}, "invalid-request", "wait"),
        ({"after": "nope"}, "invalid-cursor", "after"),
        ({"after": ["start", "end"]}, "invalid-request", "after"),
    ],
)
async def test_bad_poll_parameters(
    client: httpx.AsyncClient, params: dict[str, Any], code: str, field: str
) -> None:
    """Out-of-range or malformed limit, wait and after are 400 problems naming the field."""
    for path, extra in (("/v1/topics/bad.t/messages", {}), ("/v1/messages", {"topic": "bad.*"})):
        r = await client.get(path, params={**extra, **params})
        assert r.status_code == 400, r.text
        assert (r.json()["code"], r.json()["field"]) == (code, field)


async def test_cursor_of_another_topic_is_refused(client: httpx.AsyncClient) -> None:
    """A single-topic poll refuses another topic's cursor instead of reinterpreting it."""
    other = await publish(client, "one.a", 1)
    await publish(client, "one.b", 1)
    r = await client.get("/v1/topics/one.b/messages", params={"after": other["cursor"]})
    assert r.status_code == 400 and r.json()["code"] == "invalid-cursor"
    r = await client.get("/v1/messages")
    assert r.status_code == 400 and r.json()["field"] == "topic"
