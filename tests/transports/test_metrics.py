"""``GET /metrics`` and ``GET /v1/stats`` on a real hub, on every engine.

Scrapes are parsed with prometheus-client's own parsers; counters are checked
to move with real publishes, deliveries on each door, group pulls and
settles, uploads and jobs.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from hubbub.config import Config
from hubbub.core import PublishItem
from tests.conftest import UNIT, HubServer, start_server

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
def config() -> Config:
    return Config.from_dict({
        "namespaces": {"dlx": {"max_deliver": 1}},
        "server": {"buffer": 16},
        "jobs": {"max_attempts": 2},
    })


@pytest.fixture
async def client(hub_server: HubServer) -> Any:
    async with hub_server.client() as c:
        yield c


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def eventually(client: httpx.AsyncClient, check: Callable[[Samples], bool]) -> Samples:
    """Scrape until ``check`` holds (counters move right after a write returns)."""
    async with asyncio.timeout(10 * UNIT):
        while True:
            samples = await scrape(client)
            if check(samples):
                return samples
            await asyncio.sleep(0.02)


@pytest.mark.smoke
@pytest.mark.sockets
async def test_metrics_parse_and_count_publishes(
    client: httpx.AsyncClient, engine: str
) -> None:
    """A scrape parses as Prometheus text; publishes count by namespace, never by
    topic, and every store call is one observation of the latency histogram."""
    for i in range(3):
        assert (await client.post(f"/v1/topics/chat.room{i}", json={"i": i})).status_code == 201
    assert (await client.post("/v1/topics/chat.room0", json={})).status_code == 201
    r = await client.post("/v1/publish", json=[{"topic": "orders.a", "data": 1},
                                               {"topic": "orders.b", "data": 2}])
    assert r.status_code == 201
    for _ in range(2):  # the second is a duplicate: stored once
        await client.post("/v1/topics/orders.c", json=3, headers={"Idempotency-Key": "k1"})
    samples = await scrape(client)
    assert value(samples, "hubbub_messages_published_total", namespace="chat") == 4
    assert value(samples, "hubbub_messages_published_total", namespace="orders") == 3
    assert not any(n == "hubbub_messages_published_total" and ("topic", "chat.room1") in labels
                   for n, labels in samples)
    assert value(samples, "hubbub_publish_duplicates_total") == 1
    assert value(samples, "hubbub_publish_seconds_count") == 7
    sum_ = value(samples, "hubbub_publish_seconds_sum")
    assert sum_ is not None and sum_ > 0
    buckets = sorted(
        (float(dict(labels)["le"]), v) for (n, labels), v in samples.items()
        if n == "hubbub_publish_seconds_bucket")
    assert buckets[-1] == (float("inf"), 7)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:], strict=False))
    assert value(samples, "hubbub_info", version="0.1.0", engine=engine) == 1
    assert value(samples, "hubbub_store_up") == 1
    assert value(samples, "hubbub_topics") == 6
    assert value(samples, "hubbub_fanout_messages_total") == 7
    assert value(samples, "hubbub_store_errors_total", op="append") == 0
    assert value(samples, "process_cpu_seconds_total") is not None


@pytest.mark.sockets
async def test_deliveries_and_connections_per_door(
    client: httpx.AsyncClient, hub_server: HubServer
) -> None:
    """Each door counts the messages it writes and, while they are open, its
    connections: polls, a long poll, an SSE stream, a WebSocket."""
    for i in range(3):
        await client.post("/v1/topics/news.a", json=i)
    r = await client.get("/v1/topics/news.a/messages", params={"after": "start"})
    assert len(r.json()["messages"]) == 3
    samples = await scrape(client)
    assert value(samples, "hubbub_deliveries_total", door="poll") == 3

    # A long poll is open while it waits, and counts what it returns.
    long_poll = asyncio.ensure_future(client.get(
        "/v1/topics/news.a/messages", params={"after": "end", "wait": str(10 * UNIT)}))
    await eventually(client, lambda s: value(s, "hubbub_connections", door="longpoll") == 1)
    await client.post("/v1/topics/news.a", json="woken")
    assert [m["data"] for m in (await long_poll).json()["messages"]] == ["woken"]
    samples = await eventually(
        client, lambda s: value(s, "hubbub_connections", door="longpoll") == 0)
    assert value(samples, "hubbub_deliveries_total", door="longpoll") == 1

    # An SSE stream.
    async with aconnect_sse(client, "GET", "/v1/events", params={"topic": "news.*"}) as source:
        events = source.aiter_sse()
        assert (await anext(events)).event == "ready"
        await eventually(client, lambda s: value(s, "hubbub_connections", door="sse") == 1)
        await client.post("/v1/publish", json=[{"topic": "news.b", "data": 1},
                                               {"topic": "news.c", "data": 2}])
        got = [json.loads((await anext(events)).data)["data"] for _ in range(2)]
        assert got == [1, 2]
        await eventually(client, lambda s: value(s, "hubbub_deliveries_total", door="sse") == 2)
    await eventually(client, lambda s: value(s, "hubbub_connections", door="sse") == 0)

    # A WebSocket.
    async with connect(f"{hub_server.ws_url}/v1/ws", subprotocols=["hubbub.v1.json"]) as ws:
        await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["news.a"]}))
        assert json.loads(await ws.recv())["op"] == "ok"
        samples = await eventually(
            client, lambda s: value(s, "hubbub_connections", door="ws") == 1)
        for i in range(4):
            await client.post("/v1/topics/news.a", json=i)
        frames = [json.loads(await ws.recv()) for _ in range(4)]
        assert [f["data"] for f in frames] == [0, 1, 2, 3]
        await eventually(client, lambda s: value(s, "hubbub_deliveries_total", door="ws") == 4)
    samples = await eventually(client, lambda s: value(s, "hubbub_connections", door="ws") == 0)
    assert value(samples, "hubbub_deliveries_total", door="poll") == 3
    assert value(samples, "hubbub_slow_consumer_disconnects_total", door="ws") == 0


async def test_gaps_are_counted_apart_from_deliveries(
    client: httpx.AsyncClient, hub_server: HubServer
) -> None:
    """A gap notice is counted as a gap with its reason, not as a delivery."""
    hub = hub_server.hub
    await client.post("/v1/topics/g.t", json=1)
    stale = (await client.get("/v1/topics/g.t")).json()["cursor"]
    epoch = stale.split(".")[0]
    cursor = stale.replace(epoch, "zzzzzzzzzz", 1)  # a log the store never had
    r = await client.get("/v1/messages", params={"topic": "g.t", "after": cursor})
    assert r.status_code == 200, r.text
    assert r.json()["gaps"] and len(r.json()["messages"]) == 1
    samples = await scrape(client)
    assert value(samples, "hubbub_gaps_total", door="poll", reason="epoch") == 1
    assert value(samples, "hubbub_deliveries_total", door="poll") == 1
    assert hub.metrics.poll.gaps == {"epoch": 1}


async def test_groups_pending_leased_settled_and_dead_lettered(
    client: httpx.AsyncClient,
) -> None:
    """Leases handed out, held, acked, nacked; the store's pending entries; and a
    message past max_deliver moved to the dead-letter topic."""
    for i in range(3):
        await client.post("/v1/topics/work.a", json=i)
    r = await client.post("/v1/groups/g1/pull",
                          params={"topic": "work.*", "max": "2", "start": "start"})
    leases = [m["lease"] for m in r.json()["messages"]]
    assert len(leases) == 2
    samples = await scrape(client)
    assert value(samples, "hubbub_group_deliveries_total", group="g1") == 2
    assert value(samples, "hubbub_group_leased", group="g1") == 2
    assert value(samples, "hubbub_group_pending", group="g1") == 2
    assert (await client.post("/v1/groups/g1/ack", json={"ids": leases[:1]})).status_code == 200
    assert (await client.post("/v1/groups/g1/nack", json={"ids": leases[1:]})).status_code == 200
    samples = await scrape(client)
    assert value(samples, "hubbub_group_settled_total", group="g1", action="ack") == 1
    assert value(samples, "hubbub_group_settled_total", group="g1", action="nack") == 1
    assert value(samples, "hubbub_group_leased", group="g1") == 0
    assert value(samples, "hubbub_group_pending", group="g1") == 1  # the nacked one, due again

    # max_deliver = 1 in dlx: a nacked message is dead-lettered by the next pull.
    await client.post("/v1/topics/dlx.a", json="poison")
    r = await client.post("/v1/groups/g2/pull", params={"topic": "dlx.a", "start": "start"})
    (lease,) = [m["lease"] for m in r.json()["messages"]]
    await client.post("/v1/groups/g2/nack", json={"ids": [lease], "error": "cannot parse"})
    r = await client.post("/v1/groups/g2/pull", params={"topic": "dlx.a"})
    assert r.json()["messages"] == []
    samples = await scrape(client)
    assert value(samples, "hubbub_group_dead_lettered_total", group="g2") == 1
    assert value(samples, "hubbub_group_pending", group="g2") == 0
    assert value(samples, "hubbub_group_leased", group="g2") == 0


async def test_problems_are_counted_by_code(client: httpx.AsyncClient) -> None:
    """Every problem answer counts under its code."""
    await client.get("/v1/nothing")
    await client.get("/v1/topics/no.such")
    await client.post("/v1/topics/bad..topic", json=1)
    samples = await scrape(client)
    assert value(samples, "hubbub_http_problems_total", code="not-found") == 2
    assert value(samples, "hubbub_http_problems_total", code="invalid-topic") == 1


async def test_openmetrics_when_asked(client: httpx.AsyncClient) -> None:
    """A scraper asking for OpenMetrics gets it, and it parses as such."""
    await client.post("/v1/topics/chat.a", json=1)
    r = await client.get("/metrics", headers={
        "Accept": "application/openmetrics-text; version=1.0.0, text/plain;q=0.5"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in openmetrics_families(r.text)}
    (sample,) = families["hubbub_messages_published"].samples
    assert sample.labels == {"namespace": "chat"} and sample.value == 1


async def test_uploads_and_jobs(client: httpx.AsyncClient) -> None:
    """Upload bytes committed count; uploads and jobs are counted by state from the store."""
    r = await client.post("/v1/uploads/", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "5000", "Upload-Metadata": "filename YS5iaW4="})
    assert r.status_code == 201, r.text
    r = await client.patch(r.headers["location"], content=b"x" * 3000, headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text
    for i in range(2):
        assert (await client.post("/v1/jobs/resize", json={"n": i})).status_code == 202
    r = await client.post("/v1/jobs/resize/take", params={"lease": "30"})
    assert r.status_code == 200, r.text
    samples = await scrape(client)
    assert value(samples, "hubbub_upload_bytes_received_total") == 3000
    assert value(samples, "hubbub_uploads", state="in_progress") == 1
    assert value(samples, "hubbub_uploads", state="complete") == 0
    assert value(samples, "hubbub_jobs", state="queued") == 1
    assert value(samples, "hubbub_jobs", state="running") == 1

    stats = (await client.get("/v1/stats")).json()
    assert stats["uploads"]["bytes_received"] == 3000
    assert stats["uploads"]["active"] == [
        {"name": "a.bin", "offset": 3000, "length": 5000, "created": pytest.approx(
            stats["uploads"]["active"][0]["created"])}]
    assert stats["jobs"]["states"] == {"queued": 1, "running": 1}
    assert [j["state"] for j in stats["jobs"]["active"]] == ["running", "queued"] or \
        sorted(j["state"] for j in stats["jobs"]["active"]) == ["queued", "running"]
    assert {g["group"] for g in stats["groups"]} == {"jobs-resize"}


async def test_stats_is_the_same_snapshot_as_json(
    client: httpx.AsyncClient, engine: str
) -> None:
    """/v1/stats answers what /metrics exports, as JSON."""
    await client.post("/v1/topics/chat.a", json=1)
    stats = (await client.get("/v1/stats")).json()
    assert stats["node"]["engine"] == engine and stats["node"]["draining"] is False
    assert stats["published"] == {"total": 1, "namespaces": {"chat": 1}, "duplicates": 0}
    assert set(stats["doors"]) == {"ws", "sse", "longpoll", "poll"}
    assert stats["publish_latency"]["count"] == 1
    assert stats["publish_latency"]["buckets"][-1] == [None, 1]  # +Inf is null in JSON
    assert stats["store"] == {"up": True, "errors": {"append": 0, "read": 0, "feed": 0}}
    assert stats["topics"] == 1 and stats["groups"] == []


@pytest.mark.parametrize("engine", ["memory"])
@pytest.mark.sockets
async def test_a_slow_sse_reader_is_counted_when_cut_off(
    client: httpx.AsyncClient, hub_server: HubServer
) -> None:
    """An SSE client that stops reading is cut off and counted, even though the
    stream never gets to tell it (it is stuck writing to the full socket)."""
    hub = hub_server.hub
    port = int(hub_server.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    await loop.sock_sendall(sock, b"GET /v1/events?topic=slow.t HTTP/1.1\r\nHost: localhost\r\n\r\n")
    payload = json.dumps("x" * 8192).encode()
    try:
        await eventually(client, lambda s: value(s, "hubbub_connections", door="sse") == 1)
        async with asyncio.timeout(60 * UNIT):
            published = 0
            while hub.fanout.count("slow.t"):
                assert published < 20_000, "the slow reader was never cut off"
                await hub.publish_batch([PublishItem("slow.t", payload)] * 8)
                published += 8
                await asyncio.sleep(0)
    finally:
        sock.close()
    samples = await eventually(
        client, lambda s: value(s, "hubbub_connections", door="sse") == 0)
    assert value(samples, "hubbub_slow_consumer_disconnects_total", door="sse") == 1


async def test_statistics_need_an_admin_with_auth_on(tmp_path: Any) -> None:
    """With authentication on, /metrics and /v1/stats answer admins only; the
    dashboard's page itself needs no credentials (its data does)."""
    config = Config.from_dict({"auth": {
        "api_keys": {"admin-key-0123456789": {"admin": True},
                     "reader-key-0123456789": {"sub": [">"]}},
        "anonymous": {"sub": ["public.>"]},
    }})
    srv = await start_server("memory://", config)
    try:
        async with srv.client() as c:
            for path in ("/metrics", "/v1/stats"):
                assert (await c.get(path)).status_code == 401
                r = await c.get(path, headers={"Authorization": "Bearer reader-key-0123456789"})
                assert r.status_code == 403 and r.json()["code"] == "forbidden"
                r = await c.get(path, headers={"Authorization": "Bearer admin-key-0123456789"})
                assert r.status_code == 200
            assert (await c.get("/")).status_code == 200
            assert (await c.get("/dashboard/app.js")).status_code == 200
    finally:
        await srv.stop()
