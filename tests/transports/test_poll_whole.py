"""Long polls on the ``hubbub.respond`` extension: waiting together, answered whole.

``hubbub serve``'s HTTP/1.1 protocol offers the extension
(:mod:`hubbub.server.whole`). Here every test of ``test_poll.py`` runs again
with this module's settings, next to tests of polls waiting in groups
(:mod:`hubbub.core.polls`) and of whole responses.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.config import Config
from hubbub.core import PublishItem
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubServer, serve_app, store_url
from tests.transports import test_poll
from tests.transports.test_poll import publish

# Every test of the polling doors, again, on the extension (the module's own
# ``hub_server`` fixture below replaces conftest's for them).
globals().update({k: v for k, v in vars(test_poll).items() if k.startswith("test_")})


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"small": {"history_size": 3},
                                            "eph": {"ephemeral": True}},
                             "server": {"buffer": 8}})


@pytest.fixture
async def hub_server(engine: str, tmp_path: Path, config: Config) -> AsyncIterator[HubServer]:
    """A real hub on hubbub's own server, as ``hubbub serve`` runs."""
    app = create_app(store_url(engine, tmp_path), config)
    srv = await serve_app(app, app, ws_max_size=config.max_message_size + 64 * 1024)
    try:
        yield srv
    finally:
        await srv.stop()


async def _until(check: Any) -> None:
    async with asyncio.timeout(5 * UNIT):
        while not check():
            await asyncio.sleep(0.005)


async def test_polls_at_one_position_share_a_subscription_and_a_page(
    hub_server: HubServer,
) -> None:
    """Polls waiting at the same position hold one subscription between them and all
    get the same page, written whole to the crowd (``respond_all``); after it,
    nothing of them is left."""
    hub = hub_server.hub
    async with hub_server.client(limits=httpx.Limits(max_connections=40)) as c:
        first = await publish(c, "crowd.t", 0)
        tasks = [asyncio.create_task(c.get("/v1/topics/crowd.t/messages",
                                           params={"after": first["cursor"], "wait": 30}))
                 for _ in range(30)]
        await _until(lambda: len(hub.polls) == 30)
        assert len(hub.fanout) == 1
        await hub.publish_batch([PublishItem("crowd.t", b"%d" % i) for i in (1, 2)])
        async with asyncio.timeout(10 * UNIT):
            answers = await asyncio.gather(*tasks)
    bodies = {r.content for r in answers}
    assert len(bodies) == 1 and all(r.status_code == 200 for r in answers)
    page = json.loads(bodies.pop())
    assert [m["data"] for m in page["messages"]] == [1, 2]
    assert page["cursor"] == page["messages"][-1]["cursor"]
    assert answers[0].headers["content-type"] == "application/json"
    assert len(hub.polls) == 0 and len(hub.fanout) == 0
    # The fast path was taken: the crowd was answered through respond_all.
    state = hub_server.server.state
    assert state is not None and state.counts.crowd_responses >= 30


async def test_a_crowd_on_both_routes_gets_each_routes_body(hub_server: HubServer) -> None:
    """Polls of one topic at one position through ``/v1/topics/{t}/messages`` and
    ``/v1/messages?topic=`` share a group; one publish answers them all, each
    with its own route's body (only the second reports gaps), and the hub's
    garbage collector is on again afterwards (:mod:`hubbub.server.whole`, trade-off "a crowd in three passes")."""
    hub = hub_server.hub
    async with hub_server.client(limits=httpx.Limits(max_connections=20)) as c:
        first = await publish(c, "both.t", 0)
        params = {"after": first["cursor"], "wait": 30}
        single = [asyncio.create_task(c.get("/v1/topics/both.t/messages", params=params))
                  for _ in range(5)]
        multi = [asyncio.create_task(c.get("/v1/messages", params=params | {"topic": "both.t"}))
                 for _ in range(5)]
        await _until(lambda: len(hub.polls) == 10)
        assert len(hub.fanout) == 1
        await publish(c, "both.t", 1)
        async with asyncio.timeout(10 * UNIT):
            one, many = await asyncio.gather(*single), await asyncio.gather(*multi)
    assert gc.isenabled()
    assert all(r.status_code == 200 for r in one + many)
    assert {r.content for r in one} == {one[0].content}
    assert {r.content for r in many} == {many[0].content}
    cursor = one[0].json()["messages"][0]["cursor"]
    assert one[0].json() == {"messages": one[0].json()["messages"], "cursor": cursor}
    assert many[0].json() == {"messages": one[0].json()["messages"], "cursor": cursor, "gaps": []}
    assert [m["data"] for m in one[0].json()["messages"]] == [1]
    assert hub.metrics.longpoll.deliveries >= 10


async def test_polls_at_different_positions_wait_apart(hub_server: HubServer) -> None:
    """Each poll gets what lies after its own cursor."""
    hub = hub_server.hub
    async with hub_server.client() as c:
        r0 = await publish(c, "apart.t", 0)
        r1 = await publish(c, "apart.t", 1)
        late = asyncio.create_task(c.get("/v1/topics/apart.t/messages",
                                         params={"after": r1["cursor"], "wait": 30}))
        await _until(lambda: len(hub.polls) == 1)
        early = await c.get("/v1/topics/apart.t/messages",
                            params={"after": r0["cursor"], "wait": 30})
        assert [m["data"] for m in early.json()["messages"]] == [1]  # at once, no wait
        await publish(c, "apart.t", 2)
        async with asyncio.timeout(10 * UNIT):
            assert [m["data"] for m in (await late).json()["messages"]] == [2]


async def test_a_gap_in_the_wait_reads_again(hub_server: HubServer) -> None:
    """A group that meets a gap (an ephemeral topic's overflow) lets each poll read
    the store again: the answer is what a poll from that cursor reads."""
    hub = hub_server.hub
    async with hub_server.client() as c:
        first = await publish(c, "eph.t", 0)
        params = {"after": first["cursor"], "wait": 30, "limit": 5}
        task = asyncio.create_task(c.get("/v1/topics/eph.t/messages", params=params))
        await _until(lambda: len(hub.polls) == 1)
        await hub.publish_batch([PublishItem("eph.t", b"%d" % i) for i in range(1, 21)])
        async with asyncio.timeout(10 * UNIT):
            r = await task
        direct = await c.get("/v1/topics/eph.t/messages",
                             params={"after": first["cursor"], "limit": 5})
    assert r.status_code == direct.status_code
    assert r.json() == direct.json()


async def test_drain_answers_waiting_polls_empty(hub_server: HubServer) -> None:
    """A draining hub answers its waiting polls at once, empty, with their cursors."""
    hub = hub_server.hub
    async with hub_server.client() as c:
        first = await publish(c, "drain.t", 0)
        tasks = [asyncio.create_task(c.get("/v1/topics/drain.t/messages",
                                           params={"after": first["cursor"], "wait": 30}))
                 for _ in range(3)]
        await _until(lambda: len(hub.polls) == 3)
        await hub.drain()
        async with asyncio.timeout(5 * UNIT):
            answers = await asyncio.gather(*tasks)
    assert [r.json() for r in answers] == [{"messages": [], "cursor": first["cursor"]}] * 3


async def test_leaving_polls_free_the_group(hub_server: HubServer) -> None:
    """Clients that hang up leave their group; the last one closes its subscription,
    and the one that stays still gets its answer."""
    hub = hub_server.hub
    async with hub_server.client() as c, hub_server.client() as stays:
        first = await publish(c, "leave.t", 0)
        params = {"after": first["cursor"], "wait": 30}
        leaving = [asyncio.create_task(c.get("/v1/topics/leave.t/messages", params=params))
                   for _ in range(2)]
        staying = asyncio.create_task(stays.get("/v1/topics/leave.t/messages", params=params))
        await _until(lambda: len(hub.polls) == 3)
        for t in leaving:
            t.cancel()
        await asyncio.gather(*leaving, return_exceptions=True)
        await _until(lambda: len(hub.polls) == 1)
        assert len(hub.fanout) == 1
        await publish(c, "leave.t", 1)
        async with asyncio.timeout(10 * UNIT):
            assert [m["data"] for m in (await staying).json()["messages"]] == [1]
        task = asyncio.create_task(c.get("/v1/topics/leave.t/messages",
                                         params={"wait": 30, "after": "end"}))
        await _until(lambda: len(hub.polls) == 1)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await _until(lambda: len(hub.polls) == 0 and len(hub.fanout) == 0)


@pytest.mark.parametrize("engine", ["memory"])
async def test_whole_responses_keep_the_connection_or_close_it(hub_server: HubServer) -> None:
    """On HTTP/1.1 a long poll's answer leaves the connection open for the next
    request; on HTTP/1.0 it says ``connection: close`` and closes."""
    hub = hub_server.hub
    host, port = hub_server.url.removeprefix("http://").split(":")
    first = (await hub.publish("ka.t", b"0")).message
    for version in (b"1.1", b"1.0"):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(b"GET /v1/topics/ka.t/messages?wait=30&after=%s HTTP/%s\r\n"
                         b"Host: localhost\r\n\r\n" % (first.cursor.encode(), version))
            await _until(lambda: len(hub.polls) == 1)
            await hub.publish("ka.t", b"1")
            async with asyncio.timeout(5 * UNIT):
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = json.loads(await reader.readexactly(length))
            assert head.startswith(b"HTTP/1.1 200 OK\r\n")
            assert [m["data"] for m in body["messages"]] == [1]
            if version == b"1.0":
                assert b"connection: close" in head.lower()
                async with asyncio.timeout(5 * UNIT):
                    assert await reader.read() == b""
            else:
                writer.write(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                async with asyncio.timeout(5 * UNIT):
                    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            first = (await hub.publish("ka.t", b"2")).message
        finally:
            writer.close()
