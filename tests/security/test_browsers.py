"""A hostile page in the local user's browser, against a real hub on a real socket.

Each test is one finding of the browser threat model (docs/security.md): a
WebSocket from another origin, a "simple" cross-site write, DNS rebinding.
The hub runs as ``hubbub serve`` runs it (:func:`tests.conftest.start_server`),
as ``hubbub serve`` itself (a child process), and mounted in a Starlette app.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from hubbub.config import Config
from hubbub.core.auth import mint
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubServer, serve_app, start_server, store_url

EVIL = "https://evil.example"
SECRET = b"a-test-secret-of-at-least-32-bytes!!"


async def _hub(config: Config | None = None, store: str = "memory://") -> HubServer:
    return await start_server(store, config)


@pytest.fixture
async def hub() -> AsyncIterator[HubServer]:
    srv = await _hub()
    try:
        yield srv
    finally:
        await srv.stop()


def _port(srv: HubServer) -> int:
    return int(srv.url.rsplit(":", 1)[1])


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["code"] == code
    return body


async def _stored(client: httpx.AsyncClient, topic: str) -> list[Any]:
    r = await client.get(f"/v1/topics/{topic}/messages", params={"after": "start"})
    assert r.status_code == 200
    return [m["data"] for m in r.json()["messages"]]


# -- WebSocket origins ----------------------------------------------------------------

async def test_websocket_from_another_origin_is_refused_before_accept(hub: HubServer) -> None:
    """Finding: an upgrade with Origin: https://evil.example read every topic."""
    with pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(5 * UNIT):
            async with connect(f"{hub.ws_url}/v1/ws", origin=EVIL):  # type: ignore[arg-type]
                pass
    response = refused.value.response
    assert response.status_code == 403
    assert json.loads(response.body or b"")["code"] == "forbidden"


@pytest.mark.parametrize("origin", [None, "same"])
async def test_websocket_without_or_from_its_own_origin_is_served(
    hub: HubServer, origin: str | None
) -> None:
    """No Origin (not a browser) or the hub's own page's Origin: served."""
    value = hub.url if origin == "same" else None
    async with asyncio.timeout(5 * UNIT):
        async with connect(f"{hub.ws_url}/v1/ws", origin=value) as ws:  # type: ignore[arg-type]
            await ws.send(json.dumps({"op": "sub", "id": 1, "topics": [">"]}))
            assert json.loads(await ws.recv())["op"] == "ok"


async def test_websocket_from_a_configured_origin_is_served() -> None:
    srv = await _hub(Config.from_dict({"server": {"cors_origins": [EVIL]}}))
    try:
        async with asyncio.timeout(5 * UNIT):
            async with connect(f"{srv.ws_url}/v1/ws", origin=EVIL) as ws:  # type: ignore[arg-type]
                await ws.send(json.dumps({"op": "sub", "id": 1, "topics": [">"]}))
                assert json.loads(await ws.recv())["op"] == "ok"
    finally:
        await srv.stop()


# -- cross-site writes ----------------------------------------------------------------

@pytest.mark.parametrize("path", ["/v1/topics/x.y", "/v1/publish"])
async def test_simple_cross_site_post_stores_nothing(hub: HubServer, path: str) -> None:
    """Finding: a text/plain POST (no preflight) from another site stored messages."""
    body = "hello" if path != "/v1/publish" else json.dumps([{"topic": "x.y", "data": 1}])
    async with hub.client() as c:
        r = await c.post(path, content=body,
                         headers={"Content-Type": "text/plain", "Origin": EVIL})
        assert assert_problem(r, 403, "forbidden")["field"] == "Origin"
        assert await _stored(c, "x.y") == []


@pytest.mark.parametrize("site", ["cross-site", "same-site"])
async def test_write_said_cross_site_without_origin_is_refused(hub: HubServer, site: str) -> None:
    async with hub.client() as c:
        r = await c.post("/v1/topics/x.y", content="hello",
                         headers={"Content-Type": "text/plain", "Sec-Fetch-Site": site})
        assert assert_problem(r, 403, "forbidden")["field"] == "Sec-Fetch-Site"
        assert await _stored(c, "x.y") == []


@pytest.mark.parametrize("method, path", [
    ("POST", "/v1/jobs/q"), ("POST", "/v1/groups/g/pull"), ("POST", "/v1/uploads/"),
    ("PATCH", "/v1/uploads/0123456789abcdef0123456789abcdef"),
    ("DELETE", "/v1/uploads/0123456789abcdef0123456789abcdef"),
    ("POST", "/v1/requests/x.y"),
])
async def test_every_door_refuses_cross_site_writes(hub: HubServer, method: str,
                                                    path: str) -> None:
    async with hub.client() as c:
        r = await c.request(method, path, headers={"Origin": "null"})
        assert_problem(r, 403, "forbidden")
        if path.startswith("/v1/uploads"):
            assert r.headers["tus-resumable"] == "1.0.0"


async def test_requests_not_from_a_browser_work_as_before(hub: HubServer) -> None:
    """No Origin and no Sec-Fetch-Site (curl, servers), or the hub's own page: served."""
    async with hub.client() as c:
        r = await c.post("/v1/topics/x.y", content="one", headers={"Content-Type": "text/plain"})
        assert r.status_code == 201
        same = {"Origin": hub.url, "Sec-Fetch-Site": "same-origin"}
        r = await c.post("/v1/topics/x.y", content="two",
                         headers={"Content-Type": "text/plain", **same})
        assert r.status_code == 201
        r = await c.get("/v1/topics", headers={"Origin": EVIL})  # reads: CORS decides
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        assert len(await _stored(c, "x.y")) == 2


async def test_a_configured_origin_may_write() -> None:
    srv = await _hub(Config.from_dict({"server": {"cors_origins": [EVIL]}}))
    try:
        async with srv.client() as c:
            r = await c.post("/v1/topics/x.y", content="hi", headers={
                "Content-Type": "text/plain", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
            assert r.status_code == 201
            assert r.headers["access-control-allow-origin"] == EVIL
    finally:
        await srv.stop()


# -- Host names (DNS rebinding) -------------------------------------------------------

async def test_a_rebound_host_name_is_misdirected(hub: HubServer) -> None:
    """Finding: Host: attacker.example was served, so DNS rebinding read every topic."""
    async with hub.client() as c:
        await c.post("/v1/topics/x.y", content="secret", headers={"Content-Type": "text/plain"})
        for path in ("/v1/topics", "/v1/topics/x.y/messages", "/"):
            r = await c.get(path, headers={"Host": "attacker.example"})
            body = assert_problem(r, 421, "misdirected-request")
            assert not {"topics", "messages"} & set(body)
        assert (await c.get("/healthz", headers={"Host": "10.0.0.7:8080"})).status_code == 200
    assert (await _raw_upgrade(hub, "attacker.example")).startswith(b"HTTP/1.1 421 ")
    assert (await _raw_upgrade(hub, "localhost")).startswith(b"HTTP/1.1 101 ")


async def _raw_upgrade(hub: HubServer, host: str) -> bytes:
    """The head of the answer to a WebSocket upgrade naming ``host``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(hub))
    try:
        writer.write(f"GET /v1/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        async with asyncio.timeout(5 * UNIT):
            return await reader.readuntil(b"\r\n\r\n")
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:8080", "app.localhost:1",
                                  "127.0.0.1", "127.9.9.9:80", "[::1]:8080"])
async def test_loopback_host_names_are_served(hub: HubServer, host: str) -> None:
    async with hub.client() as c:
        assert (await c.get("/v1/topics", headers={"Host": host})).status_code == 200


async def test_allowed_hosts_and_auth_serve_other_names(tmp_path: Path) -> None:
    """Configured names are served; with auth on, every name is (a token is trusted)."""
    config = Config.from_dict({"server": {"allowed_hosts": ["hub.example.com", ".corp.test"]}})
    srv = await _hub(config, store_url("sqlite", tmp_path))
    try:
        async with srv.client() as c:
            for ok in ("hub.example.com", "corp.test:8080", "a.b.corp.test"):
                assert (await c.get("/v1/topics", headers={"Host": ok})).status_code == 200
            r = await c.get("/v1/topics", headers={"Host": "evilcorp.test"})
            assert_problem(r, 421, "misdirected-request")
    finally:
        await srv.stop()
    srv = await _hub(Config.from_dict({"auth": {"secret": SECRET.decode()}}))
    try:
        async with srv.client() as c:
            token = mint(SECRET, "alice", sub=[">"])
            r = await c.get("/v1/topics", headers={"Host": "hub.example.com",
                                                   "Authorization": f"Bearer {token}"})
            assert r.status_code == 200
    finally:
        await srv.stop()


# -- hostile header values ------------------------------------------------------------

_VISIBLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=60)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(host=_VISIBLE, origin=st.none() | _VISIBLE, site=st.none() | _VISIBLE,
       method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "OPTIONS"]))
async def test_hostile_host_origin_and_fetch_site_never_give_5xx(
    hub: HubServer, host: str, origin: str | None, site: str | None, method: str
) -> None:
    headers = {"Host": host.strip() or "x", "Content-Type": "text/plain"}
    if origin is not None:
        headers["Origin"] = origin.strip()
    if site is not None:
        headers["Sec-Fetch-Site"] = site.strip()
    async with hub.client() as c:
        r = await c.request(method, "/v1/topics/x.y", content=b"hi", headers=headers)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json"


# -- the same rules mounted in another application and in `hubbub serve` --------------

async def test_mounted_hub_enforces_the_same_rules() -> None:
    hub_app = create_app("memory://")
    app = Starlette(routes=[Mount("/hub", hub_app)])
    async with hub_app.state.hub:
        srv = await serve_app(app, hub_app)
        try:
            async with srv.client() as c:
                r = await c.post("/hub/v1/topics/x.y", content="hi",
                                 headers={"Content-Type": "text/plain", "Origin": EVIL})
                assert_problem(r, 403, "forbidden")
                r = await c.get("/hub/v1/topics", headers={"Host": "attacker.example"})
                assert_problem(r, 421, "misdirected-request")
                r = await c.post("/hub/v1/topics/x.y", content="ok",
                                 headers={"Content-Type": "text/plain"})
                assert r.status_code == 201
            with pytest.raises(InvalidStatus) as refused:
                async with asyncio.timeout(5 * UNIT):
                    async with connect(f"{srv.ws_url}/hub/v1/ws",
                                       origin=EVIL):  # type: ignore[arg-type]
                        pass
            assert refused.value.response.status_code == 403
        finally:
            await srv.stop()


def test_hubbub_serve_with_no_options_refuses_the_browser_attacks(spawn_hub: Any,
                                                                 tmp_path: Path) -> None:
    """``hubbub serve`` itself (a child process): each attack of the threat model fails."""
    proc = spawn_hub(f"sqlite:///{tmp_path / 'hub.db'}")
    with httpx.Client(base_url=proc.url, timeout=10 * UNIT) as c:
        r = c.post("/v1/topics/x.y", content="hi",
                   headers={"Content-Type": "text/plain", "Origin": EVIL})
        assert_problem(r, 403, "forbidden")
        r = c.post("/v1/publish", content=json.dumps([{"topic": "x.y", "data": 1}]),
                   headers={"Content-Type": "text/plain", "Origin": EVIL})
        assert_problem(r, 403, "forbidden")
        assert_problem(c.get("/v1/topics", headers={"Host": "attacker.example"}),
                       421, "misdirected-request")
        assert c.get("/v1/topics/x.y/messages").json()["messages"] == []
        page = b"<script>alert(1)</script>"
        r = c.post("/v1/uploads/", content=page, headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": str(len(page)),
            "Upload-Metadata": "filetype dGV4dC9odG1s",  # text/html
            "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 201, r.text
        r = c.get(r.headers["location"])
        assert r.content == page and r.headers["content-disposition"] == "attachment"
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-security-policy"] == "sandbox"

    async def upgrade() -> int:
        ws_url = proc.url.replace("http://", "ws://") + "/v1/ws"
        try:
            async with asyncio.timeout(5 * UNIT):
                async with connect(ws_url, origin=EVIL):  # type: ignore[arg-type]
                    return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    assert asyncio.run(upgrade()) == 403
