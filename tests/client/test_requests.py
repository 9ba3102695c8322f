"""request() and respond(): request-reply through the client, both sides."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from hubbub.client import AsyncClient
from hubbub.protocol.errors import GatewayTimeout, NoResponders, ResponderError
from tests.conftest import UNIT, HubServer


async def test_request_gets_the_responders_reply(hub_server: HubServer) -> None:
    """JSON in, JSON out; bytes in, bytes out; each request answered once."""
    seen: list[Any] = []

    async def handler(data: Any) -> Any:
        seen.append(data)
        return data[::-1] if isinstance(data, bytes) else {"echo": data}

    async with AsyncClient(hub_server.url) as hub:
        responder = asyncio.create_task(hub.respond("svc.echo", handler, count=2))
        await hub_server.until_responder("svc.echo")
        reply = await hub.request("svc.echo", {"n": 1}, timeout=10 * UNIT)
        raw = await hub.request("svc.echo", b"abc", timeout=10 * UNIT)
        assert await asyncio.wait_for(responder, 10 * UNIT) == 2
    assert reply["data"] == {"echo": {"n": 1}} and reply["topic"].startswith("_inbox.")
    assert raw["content_type"] == "application/octet-stream"
    assert base64.b64decode(raw["data"]) == b"cba"
    assert seen == [{"n": 1}, b"abc"]


async def test_a_failing_handler_answers_the_caller_with_its_error(
    hub_server: HubServer,
) -> None:
    """A handler that raises: the caller gets ResponderError with the exception's type and
    message at once (not a timeout); the request is settled and the next one answered."""
    calls = 0

    def flaky(data: Any) -> Any:  # a plain function: run in a thread
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first try fails")
        return data + 1

    async with AsyncClient(hub_server.url) as hub, asyncio.timeout(10 * UNIT):
        responder = asyncio.create_task(hub.respond("svc.flaky", flaky, count=1))
        await hub_server.until_responder("svc.flaky")
        with pytest.raises(ResponderError) as caught:
            await hub.request("svc.flaky", 41, timeout=60)
        assert caught.value.message == "RuntimeError: first try fails"
        assert caught.value.status == 502
        reply = await hub.request("svc.flaky", 41, timeout=10 * UNIT)
        await asyncio.wait_for(responder, 10 * UNIT)
        info = await hub.group("responders-svc-flaky", ["svc.flaky"]).info()
    assert reply["data"] == 42 and calls == 2
    assert info["pending"] == 0  # the failed request was acked, not left to come back


async def test_no_responder_fails_at_once(hub_server: HubServer) -> None:
    """request() to a topic nobody takes raises NoResponders at once, whatever the timeout."""
    async with AsyncClient(hub_server.url) as hub, asyncio.timeout(5 * UNIT):
        with pytest.raises(NoResponders) as caught:
            await hub.request("svc.none", 1, timeout=60)
    assert caught.value.status == 503 and caught.value.temporary


async def test_requests_past_their_deadline_are_skipped(hub_server: HubServer) -> None:
    """A responder that starts late acks expired requests without calling the handler."""
    async with AsyncClient(hub_server.url) as hub:
        # A worker of the responders' group is there (so the request is published),
        # but does not answer.
        r = await hub.http.post("/v1/groups/responders-svc-late/pull",
                                params={"topic": "svc.late"})
        assert r.status_code == 200 and r.json() == {"messages": []}
        with pytest.raises(GatewayTimeout):
            await hub.request("svc.late", "old", timeout=0.1)
        handled: list[Any] = []

        def handler(data: Any) -> str:
            handled.append(data)
            return "ok"

        responder = asyncio.create_task(hub.respond("svc.late", handler, count=1))
        reply = await hub.request("svc.late", "new", timeout=10 * UNIT)
        await asyncio.wait_for(responder, 10 * UNIT)
    assert reply["data"] == "ok" and handled == ["new"]
