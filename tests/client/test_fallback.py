"""transport="auto": refused doors are left for the next, and nothing is lost or repeated.

Each case puts the hub behind a :class:`~tests.client.conftest.RefusingProxy`
(or turns its WebSocket door off), then follows one topic while messages are
published before and during the subscription: the subscriber must end up on
the expected door and see every message once, in order.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hubbub.client import AsyncClient, BackoffPolicy, DoorRefused
from hubbub.transports.app import create_app
from tests.client.conftest import Proxied
from tests.conftest import UNIT, free_port, serve_app

CASES = {
    # name: (create_app(websocket=), refused by the proxy, expected door, doors refused)
    "ws-off": (False, {}, "sse", {"ws"}),
    "ws-proxy": (True, {"ws": True}, "sse", {"ws"}),
    "ws-sse-proxy": (True, {"ws": True, "sse": True}, "longpoll", {"ws", "sse"}),
    "all-but-poll": (False, {"sse": True, "longpoll": True}, "poll", {"ws", "sse", "longpoll"}),
}
BEFORE, DURING = 25, 25


async def follow(client: AsyncClient, topics: str, n: int, into: list[Any]) -> Any:
    sub = client.subscribe(topics, after="start", interval=0.02, wait=5, max_backoff=0.2)
    async with sub:
        async for msg in sub:
            into.append(msg)
            if len(into) == n:
                break
    return sub


@pytest.mark.parametrize("wildcard", [False, True], ids=["topic", "pattern"])
@pytest.mark.parametrize("case", list(CASES))
async def test_auto_falls_back_to_the_first_door_not_refused(
    proxied_hub: Proxied, case: str, wildcard: bool
) -> None:
    """auto ends on the first door not refused; every message arrives once, in order,
    and the client starts its next subscription on the door that worked."""
    websocket, refuse, door, refused = CASES[case]
    srv, proxy = await proxied_hub(websocket=websocket, **refuse)
    topic = f"fb.{case}"
    async with AsyncClient(srv.url) as client:
        sent = [(await client.publish(topic, {"n": i}))["offset"] for i in range(BEFORE)]
        got: list[Any] = []
        follows = "fb.>" if wildcard else topic
        reader = asyncio.create_task(follow(client, follows, BEFORE + DURING, got))
        for i in range(BEFORE, BEFORE + DURING):
            sent.append((await client.publish(topic, {"n": i}))["offset"])
            await asyncio.sleep(0.002)
        sub = await asyncio.wait_for(reader, 20 * UNIT)
        assert [m["data"]["n"] for m in got] == list(range(BEFORE + DURING))
        assert [m["offset"] for m in got] == sent
        assert sub.transport == door
        assert client.transport == door and client.refused == refused
        for name in refused:
            # Each refused door was tried exactly once (ws-off: by the hub, not the proxy).
            assert proxy.refused[name] == (0 if name == "ws" and not websocket else 1)
        again = client.subscribe(topic, after=got[-1]["cursor"])
        assert again.transport == door  # remembered: no second round of refusals
        await again.aclose()


async def test_a_forced_door_that_is_refused_raises(proxied_hub: Proxied) -> None:
    """transport="ws" on a hub without WebSockets raises DoorRefused, with the status."""
    srv, _ = await proxied_hub(websocket=False)
    async with AsyncClient(srv.url) as client, client.subscribe("fb.forced", transport="ws") as sub:
        with pytest.raises(DoorRefused) as info:
            await asyncio.wait_for(sub.__anext__(), 10 * UNIT)
    assert info.value.status == 403 and info.value.extra["transport"] == "ws"


async def test_a_door_refused_after_a_restart_is_left_mid_stream(tmp_path: Any) -> None:
    """The hub comes back (same SQLite file, same port) without its WebSocket door: the
    subscription that was on WebSocket goes on over SSE from its cursor, nothing lost."""
    store, port = f"sqlite:///{tmp_path / 'hub.db'}", free_port()
    app = create_app(store)
    srv = await serve_app(app, app, port)
    got: list[Any] = []
    async with AsyncClient(srv.url, backoff=BackoffPolicy(0.05, 0.3)) as client:
        reader = asyncio.create_task(follow(client, "fb.restart", 20, got))
        for i in range(10):
            await client.publish("fb.restart", i)
        async with asyncio.timeout(10 * UNIT):
            while len(got) < 10:
                await asyncio.sleep(0.02)
        assert client.transport == "ws"
        await srv.stop()
        app = create_app(store, websocket=False)
        srv = await serve_app(app, app, port)
        try:
            for i in range(10, 20):
                await client.publish("fb.restart", i)
            sub = await asyncio.wait_for(reader, 20 * UNIT)
        finally:
            await srv.stop()
    assert [m["data"] for m in got] == list(range(20))
    assert sub.transport == "sse" and client.refused == {"ws"}


async def test_every_door_refused_raises(proxied_hub: Proxied) -> None:
    """When no door is left, auto says so instead of retrying forever."""
    srv, proxy = await proxied_hub(websocket=False, sse=True, longpoll=True, poll=True)
    async with AsyncClient(srv.url) as client, client.subscribe("fb.none") as sub:
        with pytest.raises(DoorRefused, match="every door"):
            await asyncio.wait_for(sub.__anext__(), 10 * UNIT)
    assert client.refused == {"ws", "sse", "longpoll", "poll"}
    assert proxy.refused["sse"] == proxy.refused["longpoll"] == proxy.refused["poll"] == 1
