"""Ownership and scoping (issue 18, item 3), each finding as a regression test.

- A principal reusing another's Idempotency-Key on a job queue made the
  other's job its own ("duplicate": true, result included); on a topic it got
  the other's receipt. Keys are now scoped to the principal.
- Any principal could squat a consumer group name, ``jobs-*`` included, and
  error details named other groups' topic patterns. Group names are now
  judged like topics, ``jobs-`` is reserved, an admin may delete a group.
- Presence took ``client`` from the query, so anyone could appear as
  ``admin``; with authentication on it is now the token's subject.

One hub with an HS256 secret on the memory engine (the rules live above the
engines); the group delete runs on every engine.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from hubbub.config import Config
from hubbub.core.auth import mint
from tests.conftest import UNIT, HubServer, start_server
from tests.transports.test_ws import JSON_PROTO, ws_client

SECRET = "ownership-secret-for-tests-0123456789ab"
ADMIN_KEY = "hk_admin_ownership_0123456789"

pytestmark = pytest.mark.timeout(60 * UNIT)


def bearer(subject: str, **grants: Any) -> dict[str, str]:
    return {"Authorization": "Bearer " + mint(SECRET.encode(), subject, **grants)}


OWNER = bearer("owner", pub=["jobs-queue.q", "chat.>"], sub=["jobs.>", "jobs-queue.q", "chat.>"])
#: May only submit: it must learn nothing of others' jobs.
SUBMITTER = bearer("mallory", pub=["jobs-queue.q", "chat.>"], sub=["chat.*"])
WORKER = bearer("worker", sub=["jobs-queue.q"])
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
async def server(tmp_path: Any) -> AsyncIterator[HubServer]:
    config = Config.from_dict({
        "auth": {"secret": SECRET, "api_keys": {ADMIN_KEY: {"subject": "root", "admin": True}}},
        "namespaces": {"room": {"presence": True}},
    })
    srv = await start_server("memory://", config)
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def client(server: HubServer) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as c:
        yield c


def problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = r.json()
    assert doc["code"] == code, doc
    return doc


# -- idempotency keys ----------------------------------------------------------------


async def test_job_key_is_scoped_to_its_owner(client: httpx.AsyncClient) -> None:
    """Another principal reusing a job's Idempotency-Key makes its own job and never
    sees the first one's result; a submit-only principal's own duplicate says only
    the id."""
    key = {"Idempotency-Key": "report-42"}
    r = await client.post("/v1/jobs/q", json={"secret": 1}, headers={**OWNER, **key})
    assert r.status_code == 202, r.text
    first = r.json()
    r = await client.post("/v1/jobs/q/take", headers=WORKER)
    taken = r.json()
    r = await client.post(f"/v1/jobs/{taken['id']}/complete", headers=WORKER,
                          json={"lease": taken["lease"], "result": {"salary": 123}})
    assert r.status_code == 200, r.text

    r = await client.post("/v1/jobs/q", json={"mine": 1}, headers={**SUBMITTER, **key})
    assert r.status_code == 202, r.text
    theirs = r.json()
    assert "duplicate" not in theirs and theirs["id"] != first["id"]
    assert "salary" not in r.text
    r = await client.post("/v1/jobs/q", json={"mine": 1}, headers={**SUBMITTER, **key})
    assert r.json() == {"id": theirs["id"], "queue": "q", "duplicate": True}

    r = await client.post("/v1/jobs/q", json={"secret": 1}, headers={**OWNER, **key})
    again = r.json()
    assert again["duplicate"] is True and again["id"] == first["id"]
    assert again["result"] == {"salary": 123}


async def test_publish_key_is_scoped_to_its_owner(server: HubServer,
                                                  client: httpx.AsyncClient) -> None:
    """A publish reusing another principal's key stores its own message (201) on
    HTTP, in a batch and on a WebSocket; the owner's retry is still a duplicate."""
    key = {"Idempotency-Key": "k1"}
    r = await client.post("/v1/topics/chat.a", json=1, headers={**OWNER, **key})
    assert r.status_code == 201
    first = r.json()
    r = await client.post("/v1/topics/chat.a", json=2, headers={**SUBMITTER, **key})
    assert r.status_code == 201 and r.json()["offset"] == first["offset"] + 1
    r = await client.post("/v1/topics/chat.a", json=1, headers={**OWNER, **key})
    assert r.status_code == 200 and r.json()["duplicate"] is True
    assert r.json()["offset"] == first["offset"]
    r = await client.post("/v1/publish", json=[{"topic": "chat.a", "data": 3, "key": "k1"}],
                          headers=bearer("trent", pub=["chat.>"]))
    assert r.status_code == 201 and "duplicate" not in r.json()["results"][0]
    token = mint(SECRET.encode(), "walter", pub=["chat.>"])
    async with ws_client(server, JSON_PROTO,
                         additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        reply = await ws.ok({"op": "pub", "id": 1, "topic": "chat.a", "data": 4, "key": "k1"})
        assert "duplicate" not in reply
        reply = await ws.ok({"op": "pub", "id": 2, "topic": "chat.a", "data": 4, "key": "k1"})
        assert reply["duplicate"] is True


# -- consumer groups -----------------------------------------------------------------


async def test_job_groups_cannot_be_squatted(client: httpx.AsyncClient) -> None:
    """``jobs-*`` group names are refused on the group doors (even to an admin), and
    the job queue keeps working."""
    await client.post("/v1/topics/chat.x", json=1, headers=SUBMITTER)
    anyone = bearer("mallory", sub=["chat.*", "*"])
    for headers in (anyone, ADMIN):
        r = await client.post("/v1/groups/jobs-q/pull", params={"topic": "chat.*"},
                              headers=headers)
        assert "reserved" in problem(r, 403, "forbidden")["detail"]
    r = await client.post("/v1/jobs/q", json={"n": 1}, headers=OWNER)
    assert r.status_code == 202
    r = await client.post("/v1/jobs/q/take", headers=WORKER)
    assert r.status_code == 200, r.text


async def test_group_names_are_authorized_like_topics(client: httpx.AsyncClient) -> None:
    """Using a group needs its name allowed; a conflict does not name the other
    group's patterns."""
    r = await client.post("/v1/groups/billing/pull", params={"topic": "chat.a"},
                          headers=SUBMITTER)
    assert "may not use group billing" in problem(r, 403, "forbidden")["detail"]
    r = await client.get("/v1/groups/billing", headers=SUBMITTER)
    problem(r, 403, "forbidden")
    r = await client.post("/v1/groups/billing/pull", params={"topic": "jobs.secret"},
                          headers=ADMIN)
    assert r.status_code == 200
    other = bearer("mallory", sub=["chat.>", "billing"])
    r = await client.post("/v1/groups/billing/pull", params={"topic": "chat.a"}, headers=other)
    doc = problem(r, 409, "conflict")
    assert "jobs.secret" not in json.dumps(doc)


async def test_group_name_on_websocket(server: HubServer) -> None:
    """The WebSocket ``sub`` with ``group`` judges the name too."""
    token = mint(SECRET.encode(), "mallory", sub=["chat.>"])
    async with ws_client(server, JSON_PROTO,
                         additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        for group in ("jobs-q", "billing"):
            reply = await ws.op({"op": "sub", "id": 1, "topics": ["chat.a"], "group": group})
            assert reply["op"] == "err" and reply["code"] == "forbidden", reply


async def test_only_an_admin_deletes_a_group(client: httpx.AsyncClient) -> None:
    """``DELETE /v1/groups/{group}``: 403 for others, 204 for an admin, then 404;
    the group's leases are gone and a later pull creates it anew."""
    await client.post("/v1/topics/chat.d", json=1, headers=OWNER)
    r = await client.post("/v1/groups/gd/pull", params={"topic": "chat.d", "start": "start"},
                          headers=ADMIN)
    lease = r.json()["messages"][0]["lease"]
    problem(await client.delete("/v1/groups/gd", headers=OWNER), 403, "forbidden")
    r = await client.delete("/v1/groups/gd", headers=ADMIN)
    assert r.status_code == 204
    problem(await client.delete("/v1/groups/gd", headers=ADMIN), 404, "not-found")
    problem(await client.get("/v1/groups/gd", headers=ADMIN), 404, "not-found")
    r = await client.post("/v1/groups/gd/ack", json={"ids": [lease]}, headers=ADMIN)
    problem(r, 404, "not-found")
    r = await client.post("/v1/groups/gd/pull", params={"topic": "chat.e"}, headers=ADMIN)
    assert r.status_code == 200


async def test_group_delete_on_every_engine(client: httpx.AsyncClient,
                                            hub_server: HubServer) -> None:
    """The delete forgets position and pending entries on every engine."""
    async with hub_server.client() as c:
        await c.post("/v1/topics/work.a", json=1)
        r = await c.post("/v1/groups/w/pull", params={"topic": "work.a", "start": "start",
                                                      "lease": "60"})
        assert len(r.json()["messages"]) == 1
        assert (await c.get("/v1/groups/w")).json()["pending"] == 1
        assert (await c.delete("/v1/groups/w")).status_code == 204
        assert (await c.get("/v1/groups/w")).status_code == 404
        r = await c.post("/v1/groups/w/pull", params={"topic": "work.a", "start": "start"})
        assert len(r.json()["messages"]) == 1  # anew, from the start
        assert (await c.delete("/v1/groups/nope")).status_code == 404


# -- presence ------------------------------------------------------------------------


async def test_presence_client_is_the_subject(server: HubServer,
                                              client: httpx.AsyncClient) -> None:
    """With auth on, ``?client=admin`` from alice is refused; left out, alice is
    present as herself, on SSE and WebSocket."""
    alice = bearer("alice", sub=["room.>"])
    r = await client.get("/v1/topics/room.a/events", params={"client": "admin"}, headers=alice)
    problem(r, 403, "forbidden")
    async with aconnect_sse(client, "GET", "/v1/topics/room.a/events",
                            params={"client": "alice"}, headers=alice) as src:
        async for _ in src.aiter_sse():
            break  # ready: present
        r = await client.get("/v1/topics/room.a/presence", headers=alice)
        assert [e["client"] for e in r.json()["present"]] == ["alice"]
    token = mint(SECRET.encode(), "bob", sub=["room.>"])
    async with ws_client(server, JSON_PROTO,
                         additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        reply = await ws.op({"op": "sub", "id": 1, "topics": ["room.b"], "client": "admin"})
        assert reply["op"] == "err" and reply["field"] == "client"
        await ws.ok({"op": "sub", "id": 2, "topics": ["room.b"]})
        r = await client.get("/v1/topics/room.b/presence", headers=alice)
        assert [e["client"] for e in r.json()["present"]] == ["bob"]
