"""Authentication and authorization on every door, over real sockets.

One hub (memory engine: the rules live above the engines) with an HS256
secret, an RSA public key, API keys and namespace rules. Clients are httpx,
httpx-sse and websockets; tokens are minted with :func:`hubbub.core.auth.mint`
or signed here with PyJWT.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from httpx_sse import aconnect_sse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidStatus

import hubbub.transports.ws.connection as ws_door
from hubbub.config import Config
from hubbub.core.auth import mint
from tests.conftest import UNIT, HubServer, start_server
from tests.transports.test_ws import Client, ws_client

SECRET = b"s3cret-for-tests-only-0123456789abcdef"
API_KEY = "hk_test_0123456789abcdef"
ADMIN_KEY = "hk_admin_0123456789abcdef"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
PROBLEM = "application/problem+json"


@pytest.fixture
def engine() -> str:
    return "memory"


@pytest.fixture
def config() -> Config:
    return Config.from_dict({
        "auth": {
            "secret": SECRET.decode(),
            "public_key": RSA_PUBLIC,
            "leeway": 0,
            "api_keys": {
                API_KEY: {"subject": "worker", "pub": ["jobs-queue.w", "svc.>"],
                          "sub": ["work.>", "jobs-queue.w", "jobs.>"]},
                ADMIN_KEY: {"subject": "root", "admin": True},
            },
        },
        "namespaces": {
            "news": {"subscribers": ["*"], "publishers": ["editor"]},
            "room": {"presence": True},
        },
    })


def token(subject: str = "alice", *, pub: tuple[str, ...] = ("chat.>", "room.>"),
          sub: tuple[str, ...] = ("chat.>", "room.>"), **kw: Any) -> str:
    return mint(SECRET, subject, pub=pub, sub=sub, **kw)


def hand_signed(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """A JWS signed with HMAC-SHA256 by hand (PyJWT refuses to make some of these)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + b64(hmac.new(key, head.encode(), hashlib.sha256).digest())


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


CHAT = bearer(token())
ADMIN = bearer(ADMIN_KEY)

#: (method, path, request kwargs) of every HTTP door that touches a topic, group,
#: request, job or upload; each must refuse a client with no credentials.
DOORS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/topics/chat.a", {"json": {"x": 1}}),
    ("POST", "/v1/publish", {"json": [{"topic": "chat.a", "data": 1}]}),
    ("GET", "/v1/topics/chat.a/messages", {}),
    ("GET", "/v1/topics/chat.a/messages", {"params": {"wait": "1"}}),
    ("GET", "/v1/messages", {"params": {"topic": "chat.>"}}),
    ("GET", "/v1/topics/chat.a/events", {}),
    ("GET", "/v1/events", {"params": {"topic": "chat.>"}}),
    ("GET", "/v1/topics", {}),
    ("GET", "/v1/topics/chat.a", {}),
    ("GET", "/v1/topics/room.a/presence", {}),
    ("GET", "/v1/groups/g", {}),
    ("POST", "/v1/groups/g/pull", {"params": {"topic": "chat.a"}}),
    ("POST", "/v1/groups/g/ack", {"json": {"ids": ["1.abcdefabcdef"]}}),
    ("POST", "/v1/requests/chat.a", {"json": 1, "params": {"timeout": "1"}}),
    ("POST", "/v1/replies/1.x", {"json": 1}),
    ("POST", "/v1/jobs/q", {"json": 1}),
    ("GET", "/v1/jobs/" + "0" * 32, {}),
    ("POST", "/v1/jobs/q/take", {}),
    ("POST", "/v1/uploads/", {"headers": {"Tus-Resumable": "1.0.0", "Upload-Length": "3"}}),
    ("HEAD", "/v1/uploads/" + "0" * 32, {"headers": {"Tus-Resumable": "1.0.0"}}),
]


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    if r.request.method == "HEAD":
        return {}
    doc: dict[str, Any] = r.json()
    assert doc["code"] == code and doc["status"] == status, doc
    return doc


async def published(client: httpx.AsyncClient, topic: str) -> list[Any]:
    r = await client.get(f"/v1/topics/{topic}/messages", params={"after": "start"},
                         headers=ADMIN)
    assert r.status_code == 200, r.text
    return [m["data"] for m in r.json()["messages"]]


# -- authentication ---------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "kw"), DOORS,
                         ids=[f"{m} {p}" for m, p, _ in DOORS])
@pytest.mark.smoke
@pytest.mark.sockets
async def test_no_credentials_is_401_on_every_door(
    client: httpx.AsyncClient, method: str, path: str, kw: dict[str, Any]
) -> None:
    """A request with no token is refused with 401, a Bearer challenge and a problem."""
    r = await client.request(method, path, **kw)
    assert_problem(r, 401, "unauthorized")
    # RFC 6750 §3.1: no error code when the request had no credentials at all.
    assert r.headers["www-authenticate"] == 'Bearer realm="hubbub"'


async def test_nothing_is_stored_without_credentials(client: httpx.AsyncClient) -> None:
    """A refused publish stores nothing."""
    assert (await client.post("/v1/topics/chat.a", json=1)).status_code == 401
    assert await published(client, "chat.a") == []


async def test_probes_and_preflights_need_no_credentials(client: httpx.AsyncClient) -> None:
    """Health, readiness, the OpenAPI document and CORS preflights stay open."""
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path
    assert (await client.options("/v1/uploads/")).status_code == 204
    spec = (await client.get("/openapi.json")).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


@pytest.mark.parametrize("tok", [
    token(ttl=-60),                                              # expired
    jwt.encode({"sub": "a"}, b"another-secret-of-32-bytes-or-more!!", algorithm="HS256"),
    jwt.encode({"sub": "a"}, None, algorithm="none"),            # unsigned
    token()[:-4] + "AAAA",                                       # signature altered
    token() + ".x",                                              # not a JWS
    "hk_unknown_0123456789",                                     # no such API key
    jwt.encode({"sub": "a", "hubbub": {"pub": ["a..b"]}}, SECRET, algorithm="HS256"),
    jwt.encode({"sub": 7}, SECRET, algorithm="HS256"),           # sub not a string
    # not valid for a day: a slow run of the suite never reaches it
    jwt.encode({"sub": "a", "nbf": time.time() + 86_400}, SECRET, algorithm="HS256"),
])
async def test_bad_tokens_are_401(client: httpx.AsyncClient, tok: str) -> None:
    """An expired, forged, unsigned, malformed or unknown token is 401 invalid_token."""
    r = await client.post("/v1/topics/chat.a", json=1, headers=bearer(tok))
    assert_problem(r, 401, "unauthorized")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]
    r = await client.get("/v1/topics/chat.a/messages", params={"token": tok})
    assert_problem(r, 401, "unauthorized")
    assert await published(client, "chat.a") == []


async def test_rs256_tokens_and_api_keys(client: httpx.AsyncClient) -> None:
    """A token signed by the private half of the public key works; so does an API key."""
    rs = jwt.encode({"sub": "bob", "exp": int(time.time()) + 60, "hubbub": {"pub": ["chat.>"]}},
                    RSA_KEY, algorithm="RS256")
    r = await client.post("/v1/topics/chat.rs", json=1, headers=bearer(rs))
    assert r.status_code == 201, r.text
    assert_problem(await client.post("/v1/topics/svc.x", json=1, headers=bearer(rs)),
                   403, "forbidden")
    r = await client.post("/v1/topics/svc.x", json=2, headers=bearer(API_KEY))
    assert r.status_code == 201, r.text
    assert_problem(await client.post("/v1/topics/chat.x", json=2, headers=bearer(API_KEY)),
                   403, "forbidden")
    # An HS256 token cannot pass for an RS256 one, nor the other way round.
    forged = hand_signed({"alg": "HS256", "typ": "JWT"}, {"sub": "x"}, RSA_PUBLIC.encode())
    assert_problem(await client.post("/v1/topics/chat.x", json=1, headers=bearer(forged)),
                   401, "unauthorized")


async def test_token_twice_is_400(client: httpx.AsyncClient) -> None:
    """RFC 6750 §2: one method per request; a header and ?token= together are refused."""
    tok = token()
    r = await client.get("/v1/topics/chat.a/messages", params={"token": tok},
                         headers=bearer(tok))
    assert_problem(r, 400, "invalid-request")
    r = await client.get("/v1/topics/chat.a/messages", params=[("token", tok), ("token", tok)])
    assert_problem(r, 400, "invalid-request")


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=300),
    st.builds(lambda t: "Bearer " + t,
              # DEL is refused by the HTTP parser itself (400), before the hub.
              st.text(st.characters(min_codepoint=0x21, max_codepoint=0xff,
                                    exclude_characters="\x7f"), max_size=300)),
    st.builds(lambda parts: "Bearer " + ".".join(parts),
              st.lists(st.text("ABCDEFabcdef0123456789-_=", max_size=40), max_size=5)),
).map(str.strip))  # h11 sends no header value with surrounding whitespace
async def test_malformed_authorization_is_401_never_500(
    client: httpx.AsyncClient, value: str
) -> None:
    """Whatever the Authorization header holds, the answer is 401 (or 2xx for a valid
    token, which random text never is), never a server error."""
    r = await client.get("/v1/topics/chat.a/messages",
                         headers={"Authorization": value.encode("latin-1")})  # type: ignore[dict-item]
    assert r.status_code == 401, (value, r.text)
    r = await client.get("/v1/topics/chat.a/messages", params={"token": value})
    assert r.status_code == 401, (value, r.text)


# -- authorization per door -------------------------------------------------------


async def test_http_publish(client: httpx.AsyncClient) -> None:
    """A chat.> token publishes to chat.*; admin.x is 403 with a problem, nothing stored."""
    r = await client.post("/v1/topics/chat.a", json={"hi": 1}, headers=CHAT)
    assert r.status_code == 201, r.text
    doc = assert_problem(await client.post("/v1/topics/admin.x", json=1, headers=CHAT),
                         403, "forbidden")
    assert doc["detail"] == "alice may not publish to admin.x" and doc["field"] == "topic"
    assert await published(client, "admin.x") == []
    # Bad input is 400 before it is judged.
    assert_problem(await client.post("/v1/topics/a..b", json=1, headers=CHAT),
                   400, "invalid-topic")


async def test_batch_with_one_forbidden_item_stores_nothing(client: httpx.AsyncClient) -> None:
    """A batch is allowed whole or refused whole (:mod:`hubbub.core.auth`,
    invariant "a refused item refuses all")."""
    batch = [{"topic": "chat.a", "data": 1}, {"topic": "admin.x", "data": 2},
             {"topic": "chat.b", "data": 3}]
    doc = assert_problem(await client.post("/v1/publish", json=batch, headers=CHAT),
                         403, "forbidden")
    assert doc["field"] == "[1].topic"
    for topic in ("chat.a", "admin.x", "chat.b"):
        assert await published(client, topic) == []
    r = await client.post("/v1/publish", json=[batch[0], batch[2]], headers=CHAT)
    assert r.status_code == 201, r.text


async def test_polls(client: httpx.AsyncClient) -> None:
    """Short and long polls, single and multi-topic, read allowed topics only."""
    await client.post("/v1/topics/chat.a", json=1, headers=CHAT)
    await client.post("/v1/topics/admin.x", json=1, headers=ADMIN)
    r = await client.get("/v1/topics/chat.a/messages", params={"after": "start"}, headers=CHAT)
    assert [m["data"] for m in r.json()["messages"]] == [1]
    for params in ({"after": "start"}, {"after": "start", "wait": "1"}):
        r = await client.get("/v1/topics/admin.x/messages", params=params, headers=CHAT)
        assert_problem(r, 403, "forbidden")
    r = await client.get("/v1/messages", params={"topic": "chat.>", "after": "start"},
                         headers=CHAT)
    assert [m["topic"] for m in r.json()["messages"]] == ["chat.a"]
    for patterns in (["chat.a", "admin.x"], [">"], ["*.x"], ["admin.>"]):
        r = await client.get("/v1/messages", params={"topic": patterns, "wait": "1"},
                             headers=CHAT)
        assert_problem(r, 403, "forbidden")


async def test_subscribe_patterns_must_be_covered(client: httpx.AsyncClient) -> None:
    """A pattern is allowed when one allowed pattern covers it, not by a union."""
    narrow = bearer(token("carol", sub=("chat.a", "chat.b", "feed.*")))
    ok = [["chat.a"], ["feed.*"], ["feed.x"]]
    refused = [["chat.*"], ["feed.>"], ["feed.x.y"], ["chat.c"]]
    for patterns in ok:
        r = await client.get("/v1/messages", params={"topic": patterns}, headers=narrow)
        assert r.status_code == 200, (patterns, r.text)
    for patterns in refused:
        r = await client.get("/v1/messages", params={"topic": patterns}, headers=narrow)
        assert_problem(r, 403, "forbidden")
    for patterns in (["chat.*"], ["chat.x.>"], ["chat.>"]):
        r = await client.get("/v1/messages", params={"topic": patterns}, headers=CHAT)
        assert r.status_code == 200, (patterns, r.text)


async def test_sse(client: httpx.AsyncClient, hub_server: HubServer) -> None:
    """SSE streams open on allowed topics (also with ?token=, as EventSource must) and
    are refused with a problem on others, before any event."""
    async with aconnect_sse(client, "GET", "/v1/topics/chat.a/events",
                            params={"token": token()}) as source:
        assert source.response.status_code == 200
        events = source.aiter_sse()
        assert (await anext(events)).event == "ready"
        await client.post("/v1/topics/chat.a", json=5, headers=CHAT)
        async with asyncio.timeout(5 * UNIT):
            ev = await anext(events)
        assert ev.event == "message" and json.loads(ev.data)["data"] == 5
    for path, params in (("/v1/topics/admin.x/events", {}),
                         ("/v1/events", {"topic": ["chat.a", "admin.>"]})):
        r = await client.get(path, params=params, headers=CHAT)
        assert_problem(r, 403, "forbidden")


async def test_metadata_and_presence(client: httpx.AsyncClient) -> None:
    """Topic metadata and presence are read like the topic; listings show readable ones."""
    await client.post("/v1/topics/chat.a", json=1, headers=CHAT)
    await client.post("/v1/topics/admin.x", json=1, headers=ADMIN)
    assert (await client.get("/v1/topics/chat.a", headers=CHAT)).status_code == 200
    assert_problem(await client.get("/v1/topics/admin.x", headers=CHAT), 403, "forbidden")
    assert (await client.get("/v1/topics/room.a/presence", headers=CHAT)).status_code == 200
    assert_problem(await client.get("/v1/topics/admin.x/presence", headers=CHAT),
                   403, "forbidden")
    names = [t["topic"] for t in (await client.get("/v1/topics", headers=CHAT)).json()["topics"]]
    assert names == ["chat.a"]
    names = [t["topic"] for t in (await client.get("/v1/topics", headers=ADMIN)).json()["topics"]]
    assert sorted(names) == ["admin.x", "chat.a"]


async def test_groups(client: httpx.AsyncClient) -> None:
    """Consuming a group is reading its topics: pull, settle and info alike."""
    await client.post("/v1/topics/admin.x", json=1, headers=ADMIN)
    r = await client.post("/v1/groups/ga/pull", params={"topic": "admin.x", "start": "start"},
                          headers=ADMIN)
    lease = r.json()["messages"][0]["lease"]
    assert_problem(await client.post("/v1/groups/ga/pull", params={"topic": "admin.x"},
                                     headers=CHAT), 403, "forbidden")
    # Without topics the group's own are judged.
    assert_problem(await client.post("/v1/groups/ga/pull", headers=CHAT), 403, "forbidden")
    assert_problem(await client.post("/v1/groups/ga/ack", json={"ids": [lease]}, headers=CHAT),
                   403, "forbidden")
    assert_problem(await client.get("/v1/groups/ga", headers=CHAT), 403, "forbidden")
    r = await client.post("/v1/groups/ga/ack", json={"ids": [lease]}, headers=ADMIN)
    assert r.status_code == 200, r.text
    await client.post("/v1/topics/chat.g", json=2, headers=CHAT)
    # The group's name is judged too, like a topic's (:mod:`hubbub.core.auth`,
    # invariant "groups are judged as topics").
    assert_problem(await client.post("/v1/groups/gc/pull",
                                     params={"topic": "chat.g", "start": "start"},
                                     headers=CHAT), 403, "forbidden")
    with_group = bearer(token(sub=("chat.>", "gc")))
    r = await client.post("/v1/groups/gc/pull", params={"topic": "chat.g", "start": "start"},
                          headers=with_group)
    assert r.status_code == 200 and len(r.json()["messages"]) == 1


async def test_requests(client: httpx.AsyncClient) -> None:
    """A request is a publish to its topic: 403 before anything is published."""
    r = await client.post("/v1/requests/admin.svc", json=1, params={"timeout": "1"},
                          headers=CHAT)
    assert_problem(r, 403, "forbidden")
    assert await published(client, "admin.svc") == []
    r = await client.post("/v1/requests/chat.svc", json=1, params={"timeout": "0.2"},
                          headers=CHAT)
    assert_problem(r, 503, "no-responders")  # allowed; nobody takes it
    # A worker's group: its name must be granted too (group names are judged like topics).
    worker = bearer(token(sub=("chat.>", "room.>", "gs")))
    r = await client.post("/v1/groups/gs/pull", params={"topic": "chat.svc"}, headers=worker)
    assert r.status_code == 200, r.text
    r = await client.post("/v1/requests/chat.svc", json=1, params={"timeout": "0.2"},
                          headers=CHAT)
    assert_problem(r, 504, "timeout")  # allowed; a worker is there but does not answer


async def test_jobs_and_uploads(client: httpx.AsyncClient) -> None:
    """Jobs: submit publishes to jobs-queue.Q, take and status read it; uploads:
    creating needs publish on uploads.*, reading one subscribe on uploads.ID."""
    worker = bearer(API_KEY)
    r = await client.post("/v1/jobs/w", json={"n": 1}, headers=worker)
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    assert_problem(await client.post("/v1/jobs/other", json=1, headers=worker), 403, "forbidden")
    assert (await client.get(f"/v1/jobs/{job}", headers=worker)).status_code == 200
    assert_problem(await client.get(f"/v1/jobs/{job}", headers=CHAT), 403, "forbidden")
    assert_problem(await client.get(f"/v1/jobs/{job}/events", headers=CHAT), 403, "forbidden")
    assert_problem(await client.post("/v1/jobs/w/take", headers=CHAT), 403, "forbidden")
    r = await client.post("/v1/jobs/w/take", headers=worker)
    assert r.status_code == 200 and r.json()["id"] == job
    tus = {"Tus-Resumable": "1.0.0", "Upload-Length": "3"}
    r = await client.post("/v1/uploads/", headers={**tus, **CHAT})
    assert_problem(r, 403, "forbidden")
    assert r.headers["tus-resumable"] == "1.0.0"
    uploader = bearer(token("up", pub=("uploads.>",), sub=()))
    r = await client.post("/v1/uploads/", headers={**tus, **uploader})
    assert r.status_code == 201, r.text
    url = r.headers["location"]
    r = await client.head(url, headers={"Tus-Resumable": "1.0.0", **uploader})
    assert r.status_code == 403  # it may write uploads, not read them back
    r = await client.patch(url, content=b"abc", headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream", **uploader})
    assert r.status_code == 204, r.text
    r = await client.patch(url, content=b"abc", headers={
        "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream", **CHAT})
    assert r.status_code == 403


async def test_namespace_rules(client: httpx.AsyncClient) -> None:
    """[namespaces.news] subscribers = ["*"], publishers = ["editor"] add to claims."""
    editor = bearer(token("editor", pub=(), sub=()))
    r = await client.post("/v1/topics/news.today", json=1, headers=editor)
    assert r.status_code == 201, r.text
    assert_problem(await client.post("/v1/topics/news.today", json=1, headers=CHAT),
                   403, "forbidden")
    for patterns in (["news.today"], ["news.>"]):
        r = await client.get("/v1/messages", params={"topic": patterns}, headers=CHAT)
        assert r.status_code == 200, r.text
    # A wildcard namespace is no namespace of the rules.
    r = await client.get("/v1/messages", params={"topic": "*.today"}, headers=CHAT)
    assert_problem(r, 403, "forbidden")


# -- WebSocket ----------------------------------------------------------------------


@pytest.mark.sockets
async def test_ws_ops_are_authorized_per_topic(hub_server: HubServer) -> None:
    """Each op on a topic the token does not allow gets err forbidden; the connection
    carries on, and allowed ops work."""
    async with ws_client(hub_server, additional_headers=CHAT) as c:
        sub = await c.ok({"op": "sub", "id": 1, "topics": ["chat.>"]})
        assert sub["sub"] == 1
        for frame, field in (
            ({"op": "sub", "id": 2, "topics": ["chat.a", "admin.x"]}, "topics[1]"),
            ({"op": "sub", "id": 3, "topics": [">"]}, "topics[0]"),
            ({"op": "sub", "id": 4, "topics": ["admin.x"], "group": "g"}, "topics[0]"),
            ({"op": "pub", "id": 5, "topic": "admin.x", "data": 1}, "topic"),
            ({"op": "req", "id": 6, "topic": "admin.svc", "data": 1}, "topic"),
        ):
            err = await c.op(frame)
            assert err["op"] == "err" and err["code"] == "forbidden", err
            assert err["field"] == field
        pub = await c.ok({"op": "pub", "id": 7, "topic": "chat.a", "data": 1})
        (msg,) = await c.messages(1)
        assert msg["offset"] == pub["offset"]
    async with hub_server.client() as client:
        assert await published(client, "admin.x") == []
        assert await published(client, "admin.svc") == []


@pytest.mark.sockets
async def test_ws_upgrade_with_bad_credentials_is_401(hub_server: HubServer) -> None:
    """A bad token on the upgrade (header or ?token=) is refused with a 401 problem."""
    for kw in ({"additional_headers": bearer(token(ttl=-60))},
               {"additional_headers": {"Authorization": "Basic YTpi"}}):
        with pytest.raises(InvalidStatus) as info:
            async with ws_client(hub_server, **kw):
                pass
        response = info.value.response
        assert response.status_code == 401
        assert json.loads(response.body or b"")["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.sockets
async def test_ws_token_in_query(hub_server: HubServer) -> None:
    """A browser's WebSocket passes the token in ?token=."""
    from websockets.asyncio.client import connect

    url = f"{hub_server.ws_url}/v1/ws?token={token()}"
    async with connect(url, proxy=None, subprotocols=["hubbub.v1.json"]) as ws:  # type: ignore[list-item]
        c = Client(ws)
        await c.ok({"op": "sub", "id": 1, "topics": ["chat.a"]})
        err = await c.op({"op": "sub", "id": 2, "topics": ["admin.x"]})
        assert err["code"] == "forbidden"
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{hub_server.ws_url}/v1/ws?token=nope", proxy=None):
            pass
    assert info.value.response.status_code == 401


@pytest.mark.sockets
async def test_ws_without_credentials_must_auth_first(hub_server: HubServer) -> None:
    """No credentials on the upgrade: any op but auth closes with 4401; an auth op
    with a good token authenticates the connection; a bad one closes it with 4401."""
    async with ws_client(hub_server) as c:
        await c.send({"op": "sub", "id": 1, "topics": ["chat.a"]})
        code, reason, _ = await c.closed()
        assert code == 4401 and "authentication required" in reason
    async with ws_client(hub_server) as c:
        ok = await c.ok({"op": "auth", "id": 1, "token": token()})
        assert ok["subject"] == "alice" and ok["sub"] == ["chat.>", "room.>"]
        await c.ok({"op": "sub", "id": 2, "topics": ["chat.a"]})
        err = await c.op({"op": "auth", "id": 3, "token": token()})
        assert err["op"] == "err" and err["field"] == "op"  # only once
        err = await c.op({"op": "pub", "id": 4, "topic": "admin.x", "data": 1})
        assert err["code"] == "forbidden"
    async with ws_client(hub_server) as c:
        await c.send({"op": "auth", "id": 1, "token": token(ttl=-60)})
        code, reason, _ = await c.closed()
        assert code == 4401 and reason == "token has expired"


@pytest.mark.sockets
async def test_ws_auth_times_out(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection with no credentials that never authenticates is closed with 4401."""
    monkeypatch.setattr(ws_door, "AUTH_TIMEOUT", 0.2 * UNIT)
    async with ws_client(hub_server) as c:
        code, reason, _ = await c.closed()
        assert code == 4401 and reason == "authentication timed out"


@pytest.mark.sockets
async def test_ws_closes_when_the_token_expires(hub_server: HubServer) -> None:
    """At its token's expiry a connection closes with 4401 and its resume cursor."""
    short = bearer(mint(SECRET, "alice", sub=["chat.>"], ttl=2))
    async with ws_client(hub_server, additional_headers=short) as c:
        sub = await c.ok({"op": "sub", "id": 1, "topics": ["chat.a"]})
        code, reason, frames = await c.closed()
        assert code == 4401 and reason.startswith("token expired; resume from ")
        assert frames[-1]["subs"] == {"1": sub["cursor"]}


async def test_sse_ends_when_the_token_expires(client: httpx.AsyncClient) -> None:
    """At its token's expiry an SSE stream ends with an ``error`` event (code
    unauthorized) carrying the cursor to resume from, after what it was sent."""
    async with aconnect_sse(client, "GET", "/v1/topics/chat.a/events",
                            params={"token": token(ttl=2)}) as source:
        events = source.aiter_sse()
        assert (await anext(events)).event == "ready"
        await client.post("/v1/topics/chat.a", json=1, headers=CHAT)
        async with asyncio.timeout(10 * UNIT):
            message = await anext(events)
            end = await anext(events)
            rest = [ev async for ev in events]
    assert message.event == "message"
    assert end.event == "error" and rest == []
    data = json.loads(end.data)
    assert data["code"] == "unauthorized" and data["message"] == "token expired"
    assert data["cursor"] == end.id == message.id


async def test_a_long_poll_ends_when_its_token_expires(client: httpx.AsyncClient) -> None:
    """A long poll waits no longer than its token lives: it answers an empty page
    then, and the next request with that token is refused."""
    short = bearer(token(ttl=2))
    started = time.monotonic()
    r = await client.get("/v1/topics/chat.a/messages", params={"after": "end", "wait": 30},
                         headers=short, timeout=30 * UNIT)
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == []
    assert time.monotonic() - started < 10 * UNIT
    again = await client.get("/v1/topics/chat.a/messages", params={"after": "end", "wait": 30},
                             headers=short)
    assert_problem(again, 401, "unauthorized")


# -- anonymous access -------------------------------------------------------------


async def test_anonymous_grant(tmp_path: Any) -> None:
    """[auth.anonymous] lets clients with no token read what it grants; anything else
    is 401 (a token could help), on HTTP and WebSocket alike."""
    config = Config.from_dict({"auth": {"secret": SECRET.decode(),
                                        "anonymous": {"sub": ["public.>"]}}})
    srv = await start_server("memory://", config)
    try:
        async with srv.client() as client:
            r = await client.get("/v1/topics/public.a/messages")
            assert r.status_code == 200, r.text
            assert_problem(await client.get("/v1/topics/chat.a/messages"), 401, "unauthorized")
            assert_problem(await client.post("/v1/topics/public.a", json=1), 401,
                           "unauthorized")
            r = await client.post("/v1/topics/chat.a", json=1, headers=CHAT)
            assert r.status_code == 201
        async with ws_client(srv) as c:
            await c.ok({"op": "sub", "id": 1, "topics": ["public.>"]})
            err = await c.op({"op": "sub", "id": 2, "topics": ["chat.a"]})
            assert err["code"] == "unauthorized"
            await c.ok({"op": "auth", "id": 3, "token": token()})  # upgrade to alice
            await c.ok({"op": "sub", "id": 4, "topics": ["chat.a"]})
    finally:
        await srv.stop()
