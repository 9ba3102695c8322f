"""TLS on hubbub's own server: HTTP/1.1 and WebSocket over TLS, and HTTP/2 for
the clients that choose it by ALPN, on the same listener."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from hubbub.config import Config
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubServer, serve_app
from tests.server.conftest import make_cert


@pytest.fixture
async def tls_hub(tmp_path: Path) -> AsyncIterator[tuple[HubServer, ssl.SSLContext]]:
    files = make_cert(tmp_path, "127.0.0.1")
    cert, key = files.cert, files.key
    app = create_app("memory://", Config())
    srv = await serve_app(app, app, tls_cert=str(cert), tls_key=str(key))
    trust = ssl.create_default_context(cafile=cert)
    try:
        yield srv, trust
    finally:
        await srv.stop()


async def test_http_and_websocket_over_tls(tls_hub: tuple[HubServer, ssl.SSLContext]) -> None:
    srv, trust = tls_hub
    base = srv.url.replace("http://", "https://")
    async with httpx.AsyncClient(base_url=base, verify=trust, timeout=10 * UNIT) as http:
        r = await http.post("/v1/topics/tls.a", json={"n": 1})
        assert r.status_code == 201 and r.http_version == "HTTP/1.1"
        r = await http.get("/v1/topics/tls.a/messages", params={"after": "start"})
        assert [m["data"] for m in r.json()["messages"]] == [{"n": 1}]
    ws_url = srv.ws_url.replace("ws://", "wss://") + "/v1/ws"
    async with connect(ws_url, ssl=trust, subprotocols=["hubbub.v1.json"],  # type: ignore[list-item]
                       proxy=None) as ws:
        await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["tls.a"],
                                  "after": "start"}))
        assert json.loads(await ws.recv())["op"] == "ok"
        assert json.loads(await ws.recv())["data"] == {"n": 1}


async def test_http2_by_alpn_on_the_same_listener(
    tls_hub: tuple[HubServer, ssl.SSLContext],
) -> None:
    """A client that offers h2 gets HTTP/2 from the server's listener: publish,
    poll and an SSE stream over one connection, and the connection is counted."""
    srv, trust = tls_hub
    base = srv.url.replace("http://", "https://")
    async with httpx.AsyncClient(base_url=base, verify=trust, http2=True,
                                 timeout=10 * UNIT) as http:
        r = await http.post("/v1/topics/h2.a", json={"n": 1})
        assert r.status_code == 201 and r.http_version == "HTTP/2"
        r = await http.get("/v1/topics/h2.a/messages", params={"after": "start"})
        assert r.http_version == "HTTP/2"
        assert [m["data"] for m in r.json()["messages"]] == [{"n": 1}]
        state = srv.server.state
        assert state is not None and len(state.connections) == 1
        async with aconnect_sse(http, "GET", "/v1/topics/h2.a/events",
                                params={"after": "start"}) as source:
            assert source.response.http_version == "HTTP/2"
            async for event in source.aiter_sse():
                if event.event == "message":
                    assert json.loads(event.data)["data"] == {"n": 1}
                    break
