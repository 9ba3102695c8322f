"""Publishing: JSON, bytes, batches, and retries that never store a message twice."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from hubbub.client import AsyncClient, BackoffPolicy
from tests.conftest import HubServer


class LoseFirstAnswer(httpx.AsyncBaseTransport):
    """Forwards every request over a real socket, but for the first POST of each
    path it throws the hub's answer away and raises a read error instead: the
    hub stored the message, the client cannot know."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.lost: list[str] = []
        self.keys: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            self.keys.append(request.headers.get("idempotency-key"))
        if request.method == "POST" and request.url.path not in self.lost:
            await response.aread()
            await response.aclose()
            self.lost.append(request.url.path)
            raise httpx.ReadError("connection lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def read_all(client: httpx.AsyncClient, topic: str) -> list[dict[str, Any]]:
    r = await client.get(f"/v1/topics/{topic}/messages", params={"after": "start"})
    assert r.status_code == 200, r.text
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


async def test_a_retried_publish_is_stored_once(hub_server: HubServer,
                                                client: httpx.AsyncClient) -> None:
    """The first answer is lost after the hub stored the message: the retry carries the
    same idempotency key, the hub says duplicate, and the topic holds one message."""
    faults = LoseFirstAnswer()
    async with AsyncClient(hub_server.url, http_transport=faults,
                           backoff=BackoffPolicy(0.01, 0.05)) as hub:
        receipt = await hub.publish("once.t", {"n": 1})
    assert faults.lost == ["/v1/topics/once.t"]
    assert len(faults.keys) == 2 and faults.keys[0] == faults.keys[1]
    assert receipt["duplicate"] is True
    stored = await read_all(client, "once.t")
    assert [m["data"] for m in stored] == [{"n": 1}]
    assert receipt["offset"] == stored[0]["offset"]


async def test_a_retried_batch_is_stored_once(hub_server: HubServer,
                                              client: httpx.AsyncClient) -> None:
    """A batch whose answer was lost is sent again with the same keys: stored once."""
    faults = LoseFirstAnswer()
    async with AsyncClient(hub_server.url, http_transport=faults,
                           backoff=BackoffPolicy(0.01, 0.05)) as hub:
        receipts = await hub.publish_batch([
            {"topic": "batch.a", "data": {"n": 1}},
            {"topic": "batch.a", "data": b"\x00raw", "content_type": "image/png"},
            {"topic": "batch.b", "data": [1, 2], "key": "mine"},
        ])
    assert faults.lost == ["/v1/publish"]
    assert [r["topic"] for r in receipts] == ["batch.a", "batch.a", "batch.b"]
    stored = await read_all(client, "batch.a")
    assert [m["offset"] for m in stored] == [receipts[0]["offset"], receipts[1]["offset"]]
    assert stored[0]["data"] == {"n": 1}
    assert stored[1]["content_type"] == "image/png"
    assert base64.b64decode(stored[1]["data"]) == b"\x00raw"
    assert [m["data"] for m in await read_all(client, "batch.b")] == [[1, 2]]


async def test_json_and_bytes(hub_server: HubServer, client: httpx.AsyncClient) -> None:
    """Anything JSON goes as JSON; bytes go as they are, with their content type."""
    async with AsyncClient(hub_server.url) as hub:
        await hub.publish("kinds.t", {"a": [1, "x", None]})
        await hub.publish("kinds.t", b"\xff\xfe", content_type="application/x-thing")
        await hub.publish("kinds.t", b"plain")
    stored = await read_all(client, "kinds.t")
    assert stored[0]["data"] == {"a": [1, "x", None]}
    assert (stored[1]["content_type"], base64.b64decode(stored[1]["data"])) == (
        "application/x-thing", b"\xff\xfe")
    assert stored[2]["content_type"] == "application/octet-stream"
