"""The HTTP request-response door: publish, batch, topic metadata, health, OpenAPI.

Every test talks to a real server over a real socket, once per engine.
"""

from __future__ import annotations

import base64

import httpx
import pytest
from starlette.routing import Route

from hubbub.config import Config
from tests.conftest import HubServer

PROBLEM = "application/problem+json"


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {"tiny": {"max_message_size": 64}}})


def assert_problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["code"] == code and body["detail"]
    if field is not None:
        assert body["field"] == field, body


async def history(client: httpx.AsyncClient, topic: str) -> list[dict[str, object]]:
    r = await client.get(f"/v1/topics/{topic}/messages")
    assert r.status_code == 200, r.text
    messages: list[dict[str, object]] = r.json()["messages"]
    return messages


# -- publish one ------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.sockets
async def test_publish_json(client: httpx.AsyncClient) -> None:
    """A JSON body is stored as JSON; the receipt says where it went."""
    r = await client.post("/v1/topics/chat.room1", json={"text": "hi", "n": [1, 2]})
    assert r.status_code == 201, r.text
    receipt = r.json()
    assert receipt["topic"] == "chat.room1" and receipt["offset"] == 1
    assert set(receipt) == {"topic", "offset", "cursor", "id", "time"}
    (msg,) = await history(client, "chat.room1")
    assert msg["data"] == {"text": "hi", "n": [1, 2]}
    assert msg["cursor"] == receipt["cursor"] and msg["id"] == receipt["id"]
    assert "content_type" not in msg


async def test_publish_plus_json_is_json(client: httpx.AsyncClient) -> None:
    """Any */*+json media type (with parameters) is stored as JSON."""
    r = await client.post(
        "/v1/topics/ce.events", content=b'{"specversion": "1.0"}',
        headers={"Content-Type": "application/cloudevents+json; charset=utf-8"},
    )
    assert r.status_code == 201, r.text
    (msg,) = await history(client, "ce.events")
    assert msg["data"] == {"specversion": "1.0"} and "content_type" not in msg


async def test_publish_bytes_keeps_content_type(client: httpx.AsyncClient) -> None:
    """A non-JSON body is stored as bytes; its Content-Type is kept; JSON carries base64."""
    raw = bytes(range(256))
    r = await client.post(
        "/v1/topics/files.a", content=raw, headers={"Content-Type": "image/png"}
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/topics/files.a", content=b"plain", headers={"Content-Type": "text/plain; charset=utf-8"}
    )
    assert r.status_code == 201, r.text
    first, second = await history(client, "files.a")
    assert first["content_type"] == "image/png"
    assert base64.b64decode(str(first["data"])) == raw
    assert second["content_type"] == "text/plain; charset=utf-8"
    assert base64.b64decode(str(second["data"])) == b"plain"


async def test_publish_without_content_type_is_octet_stream(client: httpx.AsyncClient) -> None:
    """A body with no Content-Type is bytes of application/octet-stream, even if it looks like JSON."""
    r = await client.post("/v1/topics/raw.x", content=b'{"a":1}', headers={"Content-Type": ""})
    assert r.status_code == 201, r.text
    (msg,) = await history(client, "raw.x")
    assert msg["content_type"] == "application/octet-stream"
    assert base64.b64decode(str(msg["data"])) == b'{"a":1}'


async def test_idempotency_key_dedups(client: httpx.AsyncClient) -> None:
    """A retry with the same Idempotency-Key stores nothing: 200 and the first receipt."""
    headers = {"Idempotency-Key": "order-17"}
    first = await client.post("/v1/topics/orders.new", json={"n": 1}, headers=headers)
    again = await client.post("/v1/topics/orders.new", json={"n": 1}, headers=headers)
    quoted = await client.post(
        "/v1/topics/orders.new", json={"n": 1}, headers={"Idempotency-Key": '"order-17"'}
    )
    other = await client.post(
        "/v1/topics/orders.new", json={"n": 2}, headers={"Idempotency-Key": "order-18"}
    )
    assert first.status_code == 201 and other.status_code == 201
    assert again.status_code == 200 and quoted.status_code == 200
    assert again.json() == {**first.json(), "duplicate": True} == quoted.json()
    assert [m["data"] for m in await history(client, "orders.new")] == [{"n": 1}, {"n": 2}]


async def test_publish_bad_input(client: httpx.AsyncClient) -> None:
    """Bad topic, malformed JSON, bad key, bad content type: 4xx problems, nothing stored."""
    r = await client.post("/v1/topics/bad topic", json=1)
    assert_problem(r, 400, "invalid-topic", "topic")
    r = await client.post("/v1/topics/chat.*", json=1)
    assert_problem(r, 400, "invalid-topic", "topic")
    r = await client.post(
        "/v1/topics/chat.x", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 400, "invalid-request", "data")
    r = await client.post("/v1/topics/chat.x", json=1, headers={"Idempotency-Key": "a b"})
    assert_problem(r, 400, "invalid-request", "Idempotency-Key")
    r = await client.post("/v1/topics/chat.x", content=b"x", headers={"Content-Type": "nonsense"})
    assert_problem(r, 400, "invalid-request", "content-type")
    assert (await client.get("/v1/topics/chat.x")).status_code == 404


async def test_oversize_body_is_413(client: httpx.AsyncClient, hub_server: HubServer) -> None:
    """A body over the namespace's max_message_size is refused with 413; the server goes on."""
    r = await client.post("/v1/topics/tiny.x", content=b"x" * 65,
                          headers={"Content-Type": "text/plain"})
    assert_problem(r, 413, "payload-too-large")

    async def chunks() -> object:
        for _ in range(4):
            yield b"y" * 40  # no Content-Length: refused while streaming

    r = await client.post("/v1/topics/tiny.x", content=chunks(),  # type: ignore[arg-type]
                          headers={"Content-Type": "text/plain"})
    assert_problem(r, 413, "payload-too-large")
    r = await client.post("/v1/topics/tiny.x", content=b"x" * 64,
                          headers={"Content-Type": "text/plain"})
    assert r.status_code == 201
    assert (await client.get("/healthz")).status_code == 200


# -- batches ----------------------------------------------------------------------


async def test_batch_publish(client: httpx.AsyncClient) -> None:
    """A batch stores every item in order: JSON values, bytes in base64, keys."""
    items = [
        {"topic": "b.one", "data": {"n": 1}},
        {"topic": "b.two", "data": [1, "two"], "key": "k2"},
        {"topic": "b.one", "data": base64.b64encode(b"\x00\xff").decode(),
         "content_type": "application/x-thing"},
        {"topic": "b.one", "data": "just a string", "content_type": "application/json"},
    ]
    r = await client.post("/v1/publish", json=items)
    assert r.status_code == 201, r.text
    results = r.json()["results"]
    assert [(x["topic"], x["offset"]) for x in results] == [
        ("b.one", 1), ("b.two", 1), ("b.one", 2), ("b.one", 3)
    ]
    one = await history(client, "b.one")
    assert one[0]["data"] == {"n": 1}
    assert one[1]["content_type"] == "application/x-thing"
    assert base64.b64decode(str(one[1]["data"])) == b"\x00\xff"
    assert one[2]["data"] == "just a string"
    again = await client.post("/v1/publish", json=[items[1]])
    assert again.json()["results"][0] == {**results[1], "duplicate": True}


OK = {"topic": "b.ok", "data": 1}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ([OK, {"topic": "b.*", "data": 2}], 400, "invalid-topic", "[1].topic"),
        ([OK, {"topic": 7, "data": 2}], 400, "invalid-request", "[1].topic"),
        ([OK, {"topic": "b.ok"}], 400, "invalid-request", "[1]"),
        ([{**OK, "extra": True}], 400, "invalid-request", "[0]"),
        ([OK, {**OK, "key": "a b"}], 400, "invalid-request", "[1].key"),
        ([OK, {**OK, "content_type": "x/y"}], 400, "invalid-request", "[1].data"),
        ([{**OK, "data": "!!", "content_type": "x/y"}], 400, "invalid-request", "[0].data"),
        ([{**OK, "content_type": "bad"}], 400, "invalid-request", "[0].content_type"),
        ([OK, {"topic": "tiny.t", "data": "x" * 80}], 413, "payload-too-large", "[1].data"),
        (OK, 400, "invalid-request", "body"),
        ([], 400, "invalid-request", None),
        ([OK] * 1001, 400, "invalid-request", "body"),
    ],
)
async def test_batch_is_atomic(
    client: httpx.AsyncClient, body: object, status: int, code: str, field: str | None
) -> None:
    """One bad item refuses the whole batch (the field names it); nothing is stored."""
    r = await client.post("/v1/publish", json=body)
    assert_problem(r, status, code, field)
    assert (await client.get("/v1/topics")).json()["topics"] == []


async def test_batch_malformed_json(client: httpx.AsyncClient) -> None:
    """A body that is not JSON is a 400 naming the body."""
    r = await client.post("/v1/publish", content=b"[{", headers={"Content-Type": "application/json"})
    assert_problem(r, 400, "invalid-request", "body")


# -- metadata -----------------------------------------------------------------------


async def test_topic_metadata_and_list(client: httpx.AsyncClient) -> None:
    """Topic metadata tells offsets and cursor; the list filters by pattern."""
    for topic in ("meta.a", "meta.a", "meta.b", "other.c"):
        assert (await client.post(f"/v1/topics/{topic}", json=0)).status_code == 201
    r = await client.get("/v1/topics/meta.a")
    assert r.status_code == 200
    info = r.json()
    assert info["topic"] == "meta.a" and info["first_offset"] == 1 and info["last_offset"] == 2
    assert info["count"] == 2 and info["epoch"] and info["cursor"]
    names = [t["topic"] for t in (await client.get("/v1/topics")).json()["topics"]]
    assert names == ["meta.a", "meta.b", "other.c"]
    r = await client.get("/v1/topics", params={"pattern": "meta.*"})
    assert [t["topic"] for t in r.json()["topics"]] == ["meta.a", "meta.b"]
    assert_problem(await client.get("/v1/topics", params={"pattern": "a.>.b"}),
                   400, "invalid-topic", "pattern")
    assert_problem(await client.get("/v1/topics/meta.none"), 404, "not-found", "topic")


# -- operations -----------------------------------------------------------------------


async def test_health_and_readiness(client: httpx.AsyncClient, hub_server: HubServer) -> None:
    """healthz answers while alive; readyz answers 503 while the hub drains."""
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ok"}
    hub_server.hub.draining = True
    try:
        r = await client.get("/readyz")
        assert_problem(r, 503, "unavailable")
        assert r.headers["retry-after"]
        assert (await client.get("/healthz")).status_code == 200
    finally:
        hub_server.hub.draining = False


async def test_unknown_routes_and_methods(client: httpx.AsyncClient) -> None:
    """Unknown paths and wrong methods are problem documents too."""
    assert_problem(await client.get("/v1/nothing"), 404, "not-found")
    assert_problem(await client.put("/v1/topics/a.b"), 405, "method-not-allowed")  # DELETE is the admin API's
    assert_problem(await client.put("/v1/publish", json=[]), 405, "method-not-allowed")


async def test_openapi_lists_every_route(client: httpx.AsyncClient, hub_server: HubServer) -> None:
    """/openapi.json is an OpenAPI 3.1 document describing every route and method served."""
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert spec["openapi"].startswith("3.1")
    served = {
        (route.path, method.lower())
        for route in hub_server.app.routes
        for method in (getattr(route, "methods", None) or {"GET"})
        if method != "HEAD"
    }
    described = {(path, m) for path, ops in spec["paths"].items() for m in ops if m != "parameters"}
    assert served <= described, served - described
    assert {"/v1/ws", "/v1/events", "/v1/topics/{topic}/events"} <= set(spec["paths"])
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method != "parameters":
                assert op["responses"], (path, method)
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert [r for r in hub_server.app.routes if isinstance(r, Route)]
