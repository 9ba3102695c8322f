"""The admin API on a real server, every engine: connections, disconnects, purges, job
cancels, presence entries; admin principals only."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.exceptions import ConnectionClosed

from hubbub.client import AsyncClient
from hubbub.config import Config
from hubbub.protocol.errors import Conflict, Forbidden, NotFound
from tests.conftest import UNIT, HubServer, start_server
from tests.transports.test_ws import ws_client

ADMIN_KEY = "hk_admin_0123456789abcdef"
USER_KEY = "hk_user_0123456789abcdef0"


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"room": {"presence": True}}})


def problem(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == code


async def listed(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    """The connection list once it has ``n`` entries (other nodes' lists lag a little)."""
    async with asyncio.timeout(10 * UNIT):
        while True:
            r = await client.get("/v1/connections")
            assert r.status_code == 200, r.text
            conns: list[dict[str, Any]] = r.json()["connections"]
            if len(conns) == n:
                return conns
            await asyncio.sleep(0.02)


@pytest.mark.sockets
async def test_connections_are_listed_and_disconnected(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """A WebSocket and an SSE stream are listed with door, remote address and
    subscriptions; disconnecting one closes the WebSocket with 4010 and a reason, the
    other ends the stream with a close event; both leave the list."""
    async with ws_client(hub_server) as ws, hub_server.client() as sse_http, \
            aconnect_sse(sse_http, "GET", "/v1/events",
                         params={"topic": ["news.*", "room.a"]}) as sse:
        await ws.ok({"op": "sub", "id": 1, "topics": ["chat.>"]})
        await ws.ok({"op": "sub", "id": 2, "topics": ["work.q"], "group": "g"})
        events = sse.aiter_sse()
        ready = await anext(events)
        assert ready.event == "ready"
        conns = await listed(client, 2)
        async with asyncio.timeout(5 * UNIT):
            while not (await listed(client, 2))[0]["subscriptions"]:
                await asyncio.sleep(0.02)  # the ws subs land in the list a moment later
            conns = await listed(client, 2)
        by_door = {c["door"]: c for c in conns}
        assert by_door["ws"]["subscriptions"] == ["chat.>", "work.q"]
        assert by_door["sse"]["subscriptions"] == ["news.*", "room.a"]
        assert by_door["sse"]["id"] == ready.json()["conn"]  # also its presence conn
        for c in conns:
            assert c["remote"].startswith("127.0.0.1:") and c["node"] and c["since"] > 0
        r = await client.delete(f"/v1/connections/{by_door['ws']['id']}")
        assert r.status_code == 204, r.text
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4010
        assert "disconnected by an admin" in closed.value.rcvd.reason
        r = await client.delete(f"/v1/connections/{by_door['sse']['id']}")
        assert r.status_code == 204, r.text
        async with asyncio.timeout(5 * UNIT):
            last = [ev async for ev in events]
        assert last[-1].event == "close" and last[-1].json()["reason"].startswith("disconn")
    assert await listed(client, 0) == []
    problem(await client.delete(f"/v1/connections/{by_door['ws']['id']}"), 404, "not-found")
    problem(await client.delete("/v1/connections/nope"), 400, "invalid-request")


async def test_purge_keeps_offsets_and_old_cursors_get_a_gap(client: httpx.AsyncClient) -> None:
    """Purge removes every message; offsets go on; a cursor from before is a trimmed gap."""
    for i in range(5):
        r = await client.post("/v1/topics/p.t", json=i)
    old = r.json()["cursor"]
    first = (await client.get("/v1/topics/p.t/messages", params={"limit": 1})).json()
    r = await client.post("/v1/topics/p.t/purge")
    assert r.status_code == 200 and r.json() == {"topic": "p.t", "removed": 5}
    assert (await client.get("/v1/topics/p.t/messages")).json()["messages"] == []
    r = await client.get("/v1/topics/p.t/messages", params={"after": first["cursor"]})
    problem(r, 409, "gap")
    assert r.json()["reason"] == "trimmed"
    r = await client.post("/v1/topics/p.t", json=5)
    assert r.json()["offset"] == 6
    r = await client.get("/v1/topics/p.t/messages", params={"after": old})
    assert [m["data"] for m in r.json()["messages"]] == [5]
    problem(await client.post("/v1/topics/never.written/purge"), 404, "not-found")


async def test_cancel_a_queued_and_a_running_job(client: httpx.AsyncClient) -> None:
    """A queued job cancelled is never handed to a worker; a running one's worker is
    refused its next report (409); a final job cannot be cancelled."""
    queued = (await client.post("/v1/jobs/q", json=1)).json()
    r = await client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled", r.text
    assert r.json()["finished"] is not None
    problem(await client.post(f"/v1/jobs/{queued['id']}/cancel"), 409, "conflict")
    running = (await client.post("/v1/jobs/q", json=2)).json()
    taken = (await client.post("/v1/jobs/q/take")).json()
    assert taken["id"] == running["id"]  # the cancelled one was skipped
    r = await client.post(f"/v1/jobs/{running['id']}/cancel")
    assert r.json()["state"] == "cancelled"
    r = await client.post(f"/v1/jobs/{running['id']}/progress",
                          json={"lease": taken["lease"], "progress": 50})
    problem(r, 409, "conflict")
    assert (await client.post("/v1/jobs/q/take")).status_code == 204
    problem(await client.post("/v1/jobs/" + "0" * 32 + "/cancel"), 404, "not-found")


@pytest.mark.sockets
async def test_presence_entries_are_listed_and_dropped(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Every entry of every topic is listed; a dropped one says leave (dropped) and
    stays gone though its connection lives on and its node renews."""
    async with ws_client(hub_server) as ws:
        got = await ws.ok({"op": "sub", "id": 1, "topics": ["room.a", "room.b"]})
        conn = got["conn"]
        r = await client.get("/v1/presence")
        assert sorted((e["topic"], e["conn"]) for e in r.json()["present"]) == [
            ("room.a", conn), ("room.b", conn)]
        r = await client.delete(f"/v1/topics/room.a/presence/{conn}")
        assert r.status_code == 204, r.text
        await hub_server.hub.presence.tick()  # a renewal does not bring it back
        r = await client.get("/v1/presence")
        assert [(e["topic"], e["conn"]) for e in r.json()["present"]] == [("room.b", conn)]
        r = await client.get("/v1/topics/presence.room.a/messages", params={"after": "start"})
        events = [(m["data"]["event"], m["data"].get("reason")) for m in r.json()["messages"]]
        assert events == [("join", None), ("leave", "dropped")]
        problem(await client.delete(f"/v1/topics/room.a/presence/{conn}"), 404, "not-found")


async def test_admin_only(engine: str, tmp_path: Any) -> None:
    """Without credentials 401, with a token that is no admin's 403; an admin's works,
    through the Python client too."""
    from tests.conftest import store_url

    srv = await start_server(store_url(engine, tmp_path), Config.from_dict({"auth": {
        "api_keys": {ADMIN_KEY: {"subject": "root", "admin": True},
                     USER_KEY: {"subject": "u", "pub": [">"], "sub": [">"]}}}}))
    try:
        async with srv.client() as anon:
            for method, path in [("GET", "/v1/connections"),
                                 ("DELETE", "/v1/connections/" + "0" * 16),
                                 ("POST", "/v1/topics/a.b/purge"),
                                 ("DELETE", "/v1/topics/a.b"),
                                 ("POST", "/v1/jobs/" + "0" * 32 + "/cancel"),
                                 ("GET", "/v1/presence"),
                                 ("DELETE", "/v1/topics/a.b/presence/x")]:
                problem(await anon.request(method, path), 401, "unauthorized")
                r = await anon.request(method, path,
                                       headers={"Authorization": f"Bearer {USER_KEY}"})
                problem(r, 403, "forbidden")
        async with AsyncClient(srv.url, token=USER_KEY) as user:
            with pytest.raises(Forbidden):
                await user.admin.connections()
        async with AsyncClient(srv.url, token=ADMIN_KEY) as admin:
            assert (await admin.admin.connections())["connections"] == []
            assert (await admin.admin.presence())["present"] == []
            with pytest.raises(NotFound):
                await admin.admin.disconnect("0" * 16)
            job = await admin.jobs.submit("q", 1)
            assert (await admin.admin.cancel_job(job["id"]))["state"] == "cancelled"
            with pytest.raises(Conflict):
                await admin.admin.cancel_job(job["id"])
            await admin.publish("a.b", 1)
            assert (await admin.admin.purge_topic("a.b"))["removed"] == 1
            await admin.admin.delete_topic("a.b")
            with pytest.raises(NotFound):
                await admin.admin.delete_topic("a.b")
    finally:
        await srv.stop()


@pytest.mark.sockets
async def test_delete_topic_starts_a_new_log_and_tells_readers_the_gap(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """DELETE /v1/topics/{topic}: 204; an old cursor is a 409 epoch gap (polls and
    history); the next message is offset 1 of a new epoch; a live SSE reader of the
    topic gets an error event with its cursor, a WebSocket closes 1013."""
    for i in range(3):
        r = await client.post("/v1/topics/d.t", json=i)
    old = r.json()
    async with ws_client(hub_server) as ws, hub_server.client() as sse_http, \
            aconnect_sse(sse_http, "GET", "/v1/topics/d.t/events") as sse:
        await ws.ok({"op": "sub", "id": 1, "topics": ["d.t"]})
        events = sse.aiter_sse()
        assert (await anext(events)).event == "ready"
        r = await client.delete("/v1/topics/d.t")
        assert r.status_code == 204, r.text
        async with asyncio.timeout(5 * UNIT):
            rest = [ev async for ev in events]
        assert rest[-1].event == "error" and rest[-1].json()["cursor"]
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    problem(await client.get("/v1/topics/d.t"), 404, "not-found")
    r = await client.get("/v1/topics/d.t/messages", params={"after": old["cursor"]})
    problem(r, 409, "gap")
    assert r.json()["reason"] == "epoch"
    problem(await client.get("/v1/topics/d.t/messages", params={"before": old["cursor"]}),
            409, "gap")
    r = await client.post("/v1/topics/d.t", json="new")
    assert r.json()["offset"] == 1 and r.json()["cursor"].split(".")[0] != old[
        "cursor"].split(".")[0]
    problem(await client.delete("/v1/topics/never.was"), 404, "not-found")


async def test_nobody_publishes_to_the_admin_namespace(client: httpx.AsyncClient) -> None:
    """The hub's own orders topic cannot be written by clients (403), so none is forged."""
    r = await client.post("/v1/topics/_admin.orders", json={"conn": "0" * 16})
    problem(r, 403, "forbidden")
    r = await client.post("/v1/publish", json=[{"topic": "_admin.x", "data": 1}])
    problem(r, 403, "forbidden")
