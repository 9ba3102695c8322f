"""The client's token: sent on every door; refusals raised as Unauthorized/Forbidden.

A real hub with ``[auth]`` (memory engine) on a real socket; the clients are
hubbub's own, async and blocking.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hubbub.client import TRANSPORTS, AsyncClient, Client
from hubbub.config import Config
from hubbub.core.auth import mint
from hubbub.protocol.errors import Forbidden, Unauthorized
from tests.conftest import UNIT, HubServer, start_server

SECRET = b"client-tests-secret-0123456789abcdef"
TOKEN = mint(SECRET, "alice", pub=["chat.>"], sub=["chat.>"])
CONFIG = Config.from_dict({"auth": {"secret": SECRET.decode()}})


@pytest.fixture
async def hub() -> AsyncIterator[HubServer]:
    srv = await start_server("memory://", CONFIG)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_token_goes_on_every_door(hub: HubServer, transport: str) -> None:
    """With token=, publish and subscribe work on each door."""
    async with AsyncClient(hub.url, token=TOKEN) as client:
        async with client.subscribe("chat.>", after="start", transport=transport,  # type: ignore[arg-type]
                                    wait=1, interval=0.05) as sub:
            await client.publish("chat.a", {"n": 1})
            async with asyncio.timeout(10 * UNIT):
                msg = await anext(sub)
        assert msg["data"] == {"n": 1} and sub.transport == transport


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_forbidden_topic_raises_forbidden_on_every_door(
    hub: HubServer, transport: str
) -> None:
    """A topic the token does not allow raises Forbidden with the hub's reason; the
    door is not taken for refused (no fallback)."""
    async with AsyncClient(hub.url, token=TOKEN) as client:
        with pytest.raises(Forbidden) as info:
            async with asyncio.timeout(10 * UNIT):
                async with client.subscribe("admin.x", transport=transport) as sub:  # type: ignore[arg-type]
                    await anext(sub)
        assert info.value.message == "alice may not subscribe to admin.x"
        assert client.refused == set()
        with pytest.raises(Forbidden) as info:
            await client.publish("admin.x", 1)
        assert info.value.status == 403 and info.value.field == "topic"


@pytest.mark.parametrize("transport", [*TRANSPORTS, "auto"])
async def test_no_or_bad_token_raises_unauthorized(hub: HubServer, transport: str) -> None:
    """No token, or an expired one, raises Unauthorized on each door, with the reason."""
    expired = mint(SECRET, "alice", sub=["chat.>"], ttl=-60)
    for token, reason in ((None, "authentication required"), (expired, "token has expired")):
        async with AsyncClient(hub.url, token=token, retry_for=0) as client:
            with pytest.raises(Unauthorized) as info:
                async with asyncio.timeout(10 * UNIT):
                    async with client.subscribe("chat.a", transport=transport) as sub:  # type: ignore[arg-type]
                        await anext(sub)
            assert reason in info.value.message, info.value.message
            with pytest.raises(Unauthorized) as info:
                await client.publish("chat.a", 1)
            assert info.value.status == 401 and reason in info.value.message


async def test_sync_client_sends_the_token(hub: HubServer) -> None:
    """The blocking Client takes token= too."""
    def run() -> None:
        with Client(hub.url, token=TOKEN) as c:
            assert c.publish("chat.s", 1)["offset"] == 1
            with pytest.raises(Forbidden):
                c.publish("admin.s", 1)
        with Client(hub.url, retry_for=0) as c, pytest.raises(Unauthorized):
            c.publish("chat.s", 1)

    await asyncio.to_thread(run)
