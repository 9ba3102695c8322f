"""One test per exception class: the hub's answer comes back as the right class,
carrying the problem document (status, detail, field and the extra members)."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from hubbub.client import AsyncClient, DoorRefused, Transport
from hubbub.config import Config
from hubbub.protocol import errors
from tests.client.conftest import Proxied
from tests.conftest import UNIT, HubServer


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"namespaces": {
        "short": {"history_size": 2},
        "tiny": {"max_message_size": 64},
    }})


def assert_problem(exc: errors.HubbubError, status: int, code: str) -> None:
    """The exception carries the problem document the hub sent, unchanged."""
    assert exc.status == status
    assert exc.problem is not None
    assert exc.problem["status"] == status and exc.problem["code"] == code
    assert exc.message == exc.problem["detail"]


def request_id(deadline_ms: int) -> str:
    return f"{deadline_ms}.{secrets.token_hex(16)}"


async def test_400_invalid_topic(hub_server: HubServer) -> None:
    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(errors.InvalidTopic) as info:
            await hub.publish("bad..topic", 1)
    assert isinstance(info.value, errors.InvalidRequest)
    assert_problem(info.value, 400, "invalid-topic")
    assert info.value.field == "topic"


async def test_400_invalid_cursor(hub_server: HubServer) -> None:
    async with AsyncClient(hub_server.url) as hub, hub.subscribe(
            "c.t", after="not-a-cursor", transport="poll") as sub:
        with pytest.raises(errors.InvalidCursor) as info:
            await asyncio.wait_for(sub.__anext__(), 10 * UNIT)
    assert_problem(info.value, 400, "invalid-cursor")
    assert info.value.field == "after"


async def test_400_invalid_request(hub_server: HubServer) -> None:
    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(errors.InvalidRequest) as info:
            await hub.publish_batch([{"topic": "ok.t", "data": 1}, {"topic": "x", "data": b"1",
                                                                     "content_type": "?"}])
    assert_problem(info.value, 400, "invalid-request")
    assert info.value.field == "[1].content_type"


async def test_404_not_found(hub_server: HubServer) -> None:
    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(errors.NotFound) as info:
            await hub.group("nobody").info()
    assert_problem(info.value, 404, "not-found")
    assert "nobody" in info.value.message and info.value.field == "group"


async def test_409_conflict(hub_server: HubServer) -> None:
    """A second reply to one request is refused."""
    async with AsyncClient(hub_server.url) as hub, asyncio.timeout(10 * UNIT):
        await hub.http.post("/v1/groups/present/pull", params={"topic": "conf.svc"})
        caller = asyncio.create_task(hub.request("conf.svc", 1, timeout=5 * UNIT))
        page = await hub.http.get("/v1/topics/conf.svc/messages",
                                  params={"after": "start", "wait": 5 * UNIT})
        rid = page.json()["messages"][0]["data"]["request"]
        await hub.reply(rid, {"first": True})
        with pytest.raises(errors.Conflict) as info:
            await hub.reply(rid, {"second": True})
        assert (await caller)["data"] == {"first": True}
    assert_problem(info.value, 409, "conflict")


async def test_404_reply_to_a_request_nobody_waits_for(hub_server: HubServer) -> None:
    """A reply to a well-formed id that no caller waits for is NotFound."""
    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(errors.NotFound) as info:
            await hub.reply(request_id(int(time.time() * 1000) + 60_000), {"x": 1})
    assert_problem(info.value, 404, "not-found")


@pytest.mark.parametrize("transport", ["ws", "sse", "longpoll", "poll"])
async def test_409_gap(hub_server: HubServer, transport: Transport) -> None:
    """Lost history is raised as GapError with its range, on every door; iterating
    again continues after the gap."""
    async with AsyncClient(hub_server.url) as hub:
        receipts = [await hub.publish("short.t", n) for n in range(5)]
        sub = hub.subscribe("short.t", after=receipts[0]["cursor"], transport=transport,
                            interval=0.05)
        async with sub:
            with pytest.raises(errors.GapError) as info:
                await asyncio.wait_for(sub.__anext__(), 10 * UNIT)
            rest = [(await asyncio.wait_for(sub.__anext__(), 10 * UNIT))["data"]
                    for _ in range(2)]
    gap = info.value
    assert (gap.extra["topic"], gap.extra["from"], gap.extra["to"]) == ("short.t", 2, 3)
    assert gap.extra["cursor"] and isinstance(gap, errors.Conflict)
    assert rest == [3, 4]


async def test_409_gap_as_an_event(hub_server: HubServer) -> None:
    """on_gap="event" hands the gap out in order with the messages."""
    async with AsyncClient(hub_server.url) as hub:
        receipts = [await hub.publish("short.e", n) for n in range(4)]
        async with hub.subscribe("short.e", after=receipts[0]["cursor"], on_gap="event",
                                 transport="sse") as sub:
            items = [await asyncio.wait_for(sub.__anext__(), 10 * UNIT) for _ in range(3)]
    assert items[0] == {"gap": {"topic": "short.e", "from": 2, "to": 2, "reason": "trimmed"}}
    assert [m["data"] for m in items[1:]] == [2, 3]


async def test_410_expired(hub_server: HubServer) -> None:
    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(errors.Expired) as info:
            await hub.reply(request_id(int(time.time() * 1000) - 1000), {"late": True})
    assert_problem(info.value, 410, "request-expired")


async def test_413_payload_too_large(hub_server: HubServer) -> None:
    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(errors.PayloadTooLarge) as info:
            await hub.publish("tiny.t", b"x" * 65)
    assert_problem(info.value, 413, "payload-too-large")
    assert "64" in info.value.message


async def test_415_unsupported_media_type(hub_server: HubServer) -> None:
    """No client call sends a wrong media type, so this one is made by hand: a tus
    PATCH that is not application/offset+octet-stream; the client's decoding of the
    hub's answer gives the class and the detail."""
    from hubbub.client.errors import error_from_response

    tus = {"Tus-Resumable": "1.0.0"}
    async with AsyncClient(hub_server.url) as hub:
        made = await hub.http.post("/v1/uploads/", headers={**tus, "Upload-Length": "3"})
        assert made.status_code == 201, made.text
        r = await hub.http.patch(made.headers["location"], content=b"abc", headers={
            **tus, "Upload-Offset": "0", "Content-Type": "text/plain"})
        exc = await error_from_response(r)
    assert isinstance(exc, errors.UnsupportedMediaType)
    assert_problem(exc, 415, "unsupported-media-type")


async def test_503_unavailable(hub_server: HubServer) -> None:
    """A draining hub answers 503; once retry_for is spent the client raises it."""
    hub_server.hub.draining = True
    try:
        async with AsyncClient(hub_server.url, retry_for=0) as hub:
            with pytest.raises(errors.Unavailable) as info:
                await hub.publish("any.t", 1)
    finally:
        hub_server.hub.draining = False
    assert_problem(info.value, 503, "unavailable")
    assert info.value.temporary and info.value.message == "hub is shutting down"


async def test_503_unreachable() -> None:
    """No hub at all: Unavailable, saying where the client tried."""
    async with AsyncClient("http://127.0.0.1:9", retry_for=0) as hub:
        with pytest.raises(errors.Unavailable, match="127.0.0.1:9"):
            await hub.publish("any.t", 1)


async def test_503_no_responders(hub_server: HubServer) -> None:
    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(errors.NoResponders) as info:
            await hub.request("nobody.home", {"q": 1}, timeout=60)
    assert_problem(info.value, 503, "no-responders")


async def test_504_gateway_timeout(hub_server: HubServer) -> None:
    async with AsyncClient(hub_server.url) as hub:
        await hub.http.post("/v1/groups/mute/pull", params={"topic": "nobody.home"})
        with pytest.raises(errors.GatewayTimeout) as info:
            await hub.request("nobody.home", {"q": 1}, timeout=0.2)
    assert_problem(info.value, 504, "timeout")


async def test_door_refused(proxied_hub: Proxied) -> None:
    srv, _ = await proxied_hub(sse=True)
    async with AsyncClient(srv.url) as hub, hub.subscribe("d.t", transport="sse") as sub:
        with pytest.raises(DoorRefused) as info:
            await asyncio.wait_for(sub.__anext__(), 10 * UNIT)
    assert info.value.status == 404 and info.value.extra["transport"] == "sse"


async def test_usage_errors() -> None:
    """Misuse is told at once, before anything is sent."""
    with pytest.raises(errors.UsageError):
        AsyncClient("ftp://hub")
    async with AsyncClient("http://127.0.0.1:9") as hub:
        with pytest.raises(errors.UsageError):
            hub.subscribe([])
        with pytest.raises(errors.UsageError):
            hub.subscribe("a.b", transport="carrier-pigeon")  # type: ignore[arg-type]
        with pytest.raises(errors.UsageError):
            await hub.publish("a.b", object())
