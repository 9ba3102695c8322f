"""Connections and subscriptions per principal (issue 18, item 4).

With authentication on, a principal holds at most
``[limits] connections_per_principal`` WebSockets and SSE streams and
``subscriptions_per_principal`` subscriptions at once on a node: past them an
upgrade or a stream gets 429 ``limit-exceeded``, a ``sub`` an ``err`` frame, a
late ``auth`` op close 4029. Places come back as connections end. One hub with
an HS256 secret; the counting lives above the engines.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from httpx_sse import aconnect_sse
from websockets.exceptions import InvalidStatus

from hubbub.config import Config
from hubbub.core.auth import mint
from tests.conftest import UNIT, HubServer, start_server
from tests.transports.test_ws import JSON_PROTO, ws_client

pytestmark = pytest.mark.timeout(60 * UNIT)

SECRET = "tally-secret-for-tests-0123456789abcdef"
ADMIN_KEY = "hk_admin_tally_0123456789"


def token(subject: str) -> str:
    return mint(SECRET.encode(), subject, pub=["t.>"], sub=["t.>"])


def auth(subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject)}"}


@pytest.fixture
async def server() -> AsyncIterator[HubServer]:
    config = Config.from_dict({
        "auth": {"secret": SECRET, "api_keys": {ADMIN_KEY: {"subject": "root", "admin": True}}},
        "limits": {"connections_per_principal": 2, "subscriptions_per_principal": 3},
    })
    srv = await start_server("memory://", config)
    try:
        yield srv
    finally:
        await srv.stop()


async def until(check: Any) -> None:
    async with asyncio.timeout(10 * UNIT):
        while not check():
            await asyncio.sleep(0.01)


async def test_connections_per_principal(server: HubServer) -> None:
    """The third connection of a subject is refused (WebSocket 429, SSE 429);
    another subject and an admin are not; a closed connection frees its place."""
    hub = server.hub
    async with ws_client(server, JSON_PROTO, additional_headers=auth("alice")), \
            server.client() as c:
        async with aconnect_sse(c, "GET", "/v1/topics/t.a/events", headers=auth("alice")) as src:
            assert src.response.status_code == 200
            with pytest.raises(InvalidStatus) as info:
                async with ws_client(server, JSON_PROTO, additional_headers=auth("alice")):
                    pass
            assert info.value.response.status_code == 429
            r = await c.get("/v1/topics/t.a/events", headers=auth("alice"))
            assert r.status_code == 429 and r.json()["limit"] == "connections_per_principal"
            async with ws_client(server, JSON_PROTO, additional_headers=auth("bob")) as ws:
                await ws.ok({"op": "ping", "id": 1})
            for _ in range(3):
                async with ws_client(server, JSON_PROTO,
                                     additional_headers={"Authorization": f"Bearer {ADMIN_KEY}"}):
                    pass
        await until(lambda: hub.tally.held("subject alice", "connections_per_principal") == 1)
        async with ws_client(server, JSON_PROTO, additional_headers=auth("alice")) as ws:
            await ws.ok({"op": "ping", "id": 1})
    await until(lambda: hub.tally.held("subject alice", "connections_per_principal") == 0)


async def test_subscriptions_per_principal(server: HubServer) -> None:
    """Across connections a subject holds 3 subscriptions; the fourth ``sub`` gets an
    ``err`` frame; an ``unsub`` or a closed stream gives places back."""
    async with ws_client(server, JSON_PROTO, additional_headers=auth("carol")) as ws, \
            server.client() as c:
        await ws.ok({"op": "sub", "id": 1, "topics": ["t.a"]})
        await ws.ok({"op": "sub", "id": 2, "topics": ["t.b"]})
        async with aconnect_sse(c, "GET", "/v1/topics/t.c/events", headers=auth("carol")):
            reply = await ws.op({"op": "sub", "id": 3, "topics": ["t.d"]})
            assert reply["op"] == "err" and reply["code"] == "limit-exceeded", reply
            assert reply["limit"] == "subscriptions_per_principal"
        await until(lambda: server.hub.tally.held(
            "subject carol", "subscriptions_per_principal") == 2)
        await ws.ok({"op": "sub", "id": 4, "topics": ["t.d"]})
        reply = await ws.op({"op": "sub", "id": 5, "topics": ["t.e"]})
        assert reply["op"] == "err"
        await ws.ok({"op": "unsub", "id": 6, "sub": 1})
        await ws.ok({"op": "sub", "id": 7, "topics": ["t.e"]})


async def test_late_auth_op_past_the_limit_closes_4029(server: HubServer) -> None:
    """A connection that authenticates in its first frame past the limit is closed
    with 4029."""
    async with ws_client(server, JSON_PROTO, additional_headers=auth("dave")), \
            ws_client(server, JSON_PROTO, additional_headers=auth("dave")), \
            ws_client(server, JSON_PROTO) as late:
        await late.send({"op": "auth", "id": 1, "token": token("dave")})
        code, _, _ = await late.closed()
        assert code == 4029


async def test_no_limit_with_auth_off(hub_server: HubServer) -> None:
    """With authentication off nobody is counted."""
    async with hub_server.client() as c:
        r = await c.get("/v1/topics/t.a/messages")
        assert r.status_code == 200
    assert hub_server.hub.tally.held("address 127.0.0.1", "connections_per_principal") == 0


