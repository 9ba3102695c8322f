"""The Server-Sent Events door, read with a third-party client (httpx-sse).

Streams start with a ``ready`` event carrying the resume cursor, deliver each
message as an event whose ``id:`` is its cursor, say gaps, resume exactly from
``Last-Event-ID``, keep quiet connections alive with comments, and end with
``error`` or ``close`` plus a cursor. Real server, real sockets, every engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from hubbub.config import Config
from tests.conftest import UNIT, HubServer, start_server, store_url

Events = AsyncIterator[ServerSentEvent]


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"small": {"history_size": 3}}})


@pytest.fixture
async def make_server(
    engine: str, tmp_path: Path
) -> AsyncIterator[Callable[[Config], Awaitable[HubServer]]]:
    """Start a hub with a config of the test's own (one per test)."""
    servers: list[HubServer] = []

    async def make(config: Config) -> HubServer:
        srv = await start_server(store_url(engine, tmp_path), config)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        await srv.stop()


@contextlib.asynccontextmanager
async def sse(client: httpx.AsyncClient, path: str, **kw: Any) -> AsyncIterator[Events]:
    async with (
        aconnect_sse(client, "GET", path, **kw) as source,
        contextlib.aclosing(source.aiter_sse()) as events,
    ):
        yield events


async def take(events: Events, n: int) -> list[ServerSentEvent]:
    out: list[ServerSentEvent] = []
    async with asyncio.timeout(5 * UNIT):
        while len(out) < n:
            out.append(await anext(events))
    return out


async def publish(client: httpx.AsyncClient, topic: str, value: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/topics/{topic}", json=value)
    assert r.status_code == 201, r.text
    receipt: dict[str, Any] = r.json()
    return receipt


def data(event: ServerSentEvent) -> Any:
    return json.loads(event.data)


@pytest.mark.smoke
@pytest.mark.sockets
async def test_single_topic_stream(client: httpx.AsyncClient, hub_server: HubServer) -> None:
    """A stream starts at the live end with a ready event; each message's id is its cursor."""
    await publish(client, "live.t", "before")
    async with hub_server.client() as reader, sse(reader, "/v1/topics/live.t/events") as events:
        (ready,) = await take(events, 1)
        assert ready.event == "ready" and ready.retry == 2000
        assert data(ready) == {"cursor": ready.id}
        for i in range(3):
            await publish(client, "live.t", i)
        got = await take(events, 3)
    assert [e.event for e in got] == ["message"] * 3
    assert [data(e)["data"] for e in got] == [0, 1, 2]
    assert all(e.id == data(e)["cursor"] for e in got)


async def test_stream_headers(hub_server: HubServer) -> None:
    """The stream is text/event-stream, uncached and unbuffered by proxies."""
    async with hub_server.client() as reader, sse(reader, "/v1/events?topic=h.>") as events:
        await take(events, 1)
    async with hub_server.client() as reader, aconnect_sse(
        reader, "GET", "/v1/topics/h.x/events"
    ) as source:
        headers = source.response.headers
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"


async def test_multi_topic_stream(client: httpx.AsyncClient, hub_server: HubServer) -> None:
    """A stream over patterns gets every matching topic, new ones included, in order."""
    path = "/v1/events?topic=room.*&topic=alerts.>"
    async with hub_server.client() as reader, sse(reader, path) as events:
        (ready,) = await take(events, 1)
        assert ready.event == "ready"
        await publish(client, "room.a", 1)
        await publish(client, "other.x", "no")
        await publish(client, "alerts.disk.full", 2)
        await publish(client, "room.brand-new", 3)
        got = await take(events, 3)
    assert [(data(e)["topic"], data(e)["data"]) for e in got] == [
        ("room.a", 1), ("alerts.disk.full", 2), ("room.brand-new", 3)
    ]


@pytest.mark.parametrize("path", ["/v1/topics/res.t/events", "/v1/events?topic=res.*"])
async def test_resume_with_last_event_id(
    client: httpx.AsyncClient, hub_server: HubServer, path: str
) -> None:
    """Last-Event-ID resumes exactly after that event (and wins over a stale ?after=)."""
    for i in range(5):
        await publish(client, "res.t", i)
    sep = "&" if "?" in path else "?"
    async with hub_server.client() as reader, sse(reader, path + sep + "after=start") as events:
        got = await take(events, 1 + 5)
    assert [data(e)["data"] for e in got[1:]] == [0, 1, 2, 3, 4]
    last_id = got[3].id  # the event of message 2
    for i in range(5, 7):
        await publish(client, "res.t", i)
    async with hub_server.client() as reader, sse(
        reader, path + sep + "after=start", headers={"Last-Event-ID": last_id}
    ) as events:
        ready, *resumed = await take(events, 1 + 4)
        assert ready.event == "ready"
        if path.startswith("/v1/topics/"):  # over patterns it is an equivalent watermark
            assert ready.id == last_id
        await publish(client, "res.t", 7)
        (live,) = await take(events, 1)
    assert [data(e)["data"] for e in [*resumed, live]] == [3, 4, 5, 6, 7]


async def test_gap_event(client: httpx.AsyncClient, hub_server: HubServer) -> None:
    """Resuming behind trimmed history yields a gap event before the retained messages."""
    receipts = [await publish(client, "small.t", i) for i in range(5)]
    after = receipts[0]["cursor"]
    async with hub_server.client() as reader, sse(
        reader, "/v1/topics/small.t/events", headers={"Last-Event-ID": after}
    ) as events:
        ready, gap, *msgs = await take(events, 2 + 3)
    assert ready.id == after
    assert gap.event == "gap" and gap.id == after
    assert data(gap) == {"topic": "small.t", "from": 2, "to": 2, "reason": "trimmed"}
    assert [data(e)["data"] for e in msgs] == [2, 3, 4]
    async with hub_server.client() as reader, sse(
        reader, f"/v1/events?topic=small.*&after={after}"
    ) as events:
        ready, gap, *msgs = await take(events, 2 + 3)
    assert gap.event == "gap" and data(gap)["to"] == 2 and data(gap)["reason"] == "trimmed"
    assert [data(e)["data"] for e in msgs] == [2, 3, 4]


async def test_heartbeat_comments(
    make_server: Callable[[Config], Awaitable[HubServer]],
) -> None:
    """Silence longer than the heartbeat is broken by comment lines, never by events."""
    srv = await make_server(Config.from_dict({"server": {"heartbeat": 0.1}}))
    lines: list[str] = []
    async with srv.client() as c, c.stream("GET", "/v1/topics/hb.t/events") as r:
        async with asyncio.timeout(5 * UNIT):
            async for line in r.aiter_lines():
                lines.append(line)
                if lines.count(": hb") == 3:
                    break
    assert lines[0] == "retry: 2000" and lines[2] == "event: ready"
    assert lines[-1] == ": hb"
    assert lines.count(": hb") == 3


async def test_disconnect_frees_subscription(hub_server: HubServer) -> None:
    """A client that hangs up leaves no subscription behind."""
    async with hub_server.client() as reader, sse(reader, "/v1/events?topic=gone.>") as events:
        await take(events, 1)
        assert len(hub_server.hub.fanout) == 1
    async with asyncio.timeout(5 * UNIT):
        while True:
            if len(hub_server.hub.fanout) == 0:
                break
            await asyncio.sleep(0.01)


async def test_close_event_on_drain(hub_server: HubServer) -> None:
    """When the hub drains, the stream says close with the resume cursor and ends."""
    async with hub_server.client() as reader, sse(reader, "/v1/topics/drain.t/events") as events:
        (ready,) = await take(events, 1)
        await hub_server.hub.drain()
        (close,) = await take(events, 1)
        assert close.event == "close" and close.id == ready.id == data(close)["cursor"]
        async with asyncio.timeout(5 * UNIT):
            assert [e async for e in events] == []


async def test_slow_consumer_gets_error_and_resumes(
    make_server: Callable[[Config], Awaitable[HubServer]],
) -> None:
    """A reader past its buffer gets an error event with a cursor; resuming loses nothing."""
    srv = await make_server(Config.from_dict({"server": {"buffer": 4}}))
    async with srv.client() as c, sse(c, "/v1/topics/slow.t/events") as events:
        await take(events, 1)
        batch = [{"topic": "slow.t", "data": i} for i in range(10)]
        assert (await c.post("/v1/publish", json=batch)).status_code == 201
        got: list[ServerSentEvent] = []
        async with asyncio.timeout(5 * UNIT):
            got = [e async for e in events]
    *msgs, error = got
    assert error.event == "error"
    assert data(error)["code"] == "slow-consumer" and data(error)["cursor"] == error.id
    assert error.id == (msgs[-1].id if msgs else error.id)
    async with srv.client() as c, sse(
        c, "/v1/topics/slow.t/events", headers={"Last-Event-ID": error.id}
    ) as events:
        rest = await take(events, 1 + 10 - len(msgs))
    values = [data(e)["data"] for e in msgs + rest[1:]]
    assert values == list(range(10))


@pytest.mark.parametrize(
    ("path", "headers", "code", "field"),
    [
        ("/v1/topics/bad topic/events", {}, "invalid-topic", "topic"),
        ("/v1/topics/a.*/events", {}, "invalid-topic", "topic"),
        ("/v1/topics/a.b/events?after=zzz", {}, "invalid-cursor", "after"),
        ("/v1/topics/a.b/events", {"Last-Event-ID": "zzz"}, "invalid-cursor", "Last-Event-ID"),
        ("/v1/events", {}, "invalid-request", "topic"),
        ("/v1/events?topic=a.>.b", {}, "invalid-topic", "topic"),
        ("/v1/events?topic=a&after=1&after=2", {}, "invalid-request", "after"),
    ],
)
async def test_bad_input_before_stream(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], code: str, field: str
) -> None:
    """Bad input is refused with a 400 problem before any stream starts."""
    r = await client.get(path, headers=headers)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert (r.json()["code"], r.json()["field"]) == (code, field)
