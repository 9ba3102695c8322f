"""presence(): who is on a topic now, through the client (async and sync)."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from hubbub.client import AsyncClient, Client
from hubbub.config import Config
from hubbub.protocol.errors import NotFound
from tests.conftest import UNIT, HubServer


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"room": {"presence": True}}})


async def test_presence_lists_who_is_on_a_topic(hub_server: HubServer) -> None:
    """A WebSocket subscriber is listed with what it said of itself, and is gone
    once it leaves; a namespace without presence is NotFound."""
    async with AsyncClient(hub_server.url) as hub:
        assert (await hub.presence("room.a"))["count"] == 0
        async with connect(f"{hub_server.ws_url}/v1/ws") as ws:
            await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["room.a"],
                                      "client": "alice", "info": {"name": "Alice"}}))
            ok = json.loads(await ws.recv())
            assert ok["op"] == "ok"
            now = await hub.presence("room.a")
            assert now["topic"] == "room.a" and now["count"] == 1
            [entry] = now["present"]
            assert entry["conn"] == ok["conn"]
            assert (entry["client"], entry["info"]) == ("alice", {"name": "Alice"})
            # The sync client answers the same, from a plain thread.
            sync = await asyncio.to_thread(Client, hub_server.url)
            try:
                assert await asyncio.to_thread(sync.presence, "room.a") == now
            finally:
                await asyncio.to_thread(sync.close)
        async with asyncio.timeout(10 * UNIT):
            while (await hub.presence("room.a"))["count"]:
                await asyncio.sleep(0.05)
        with pytest.raises(NotFound):
            await hub.presence("chat.a")
