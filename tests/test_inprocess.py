"""The in-process client of the transport tests (:mod:`tests.inprocess`): it must
behave as a socket would where the doors can tell the difference."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.inprocess import StreamingASGITransport


class Streamer:
    """An ASGI app that sends a head and one part, then waits for a go (or the
    client's leaving), records what it received, and ends."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.received: list[dict[str, Any]] = []
        self.scope: dict[str, Any] = {}
        self.done = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope
        while True:
            message = await receive()
            self.received.append(message)
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        waiter = asyncio.ensure_future(self.go.wait())
        gone = asyncio.ensure_future(receive())
        await asyncio.wait([waiter, gone], return_when=asyncio.FIRST_COMPLETED)
        if gone.done():
            self.received.append(gone.result())
            waiter.cancel()
        else:
            gone.cancel()
            await send({"type": "http.response.body", "body": b"second"})
            await send({"type": "http.response.body", "body": b"dropped"})  # after the end
        self.done.set()


async def test_a_response_streams_before_its_body_ends() -> None:
    """The head and the first part arrive while the app still holds the rest."""
    app = Streamer()
    async with (httpx.AsyncClient(transport=StreamingASGITransport(app),
                                  base_url="http://127.0.0.1") as client,
                client.stream("POST", "/x?a=1", content=b"body") as response):
        assert response.status_code == 200
        parts = response.aiter_bytes()
        assert await anext(parts) == b"first"
        app.go.set()
        assert [p async for p in parts] == [b"second"]
    assert app.received == [{"type": "http.request", "body": b"body", "more_body": True},
                            {"type": "http.request", "body": b"", "more_body": False}]
    assert (app.scope["path"], app.scope["query_string"]) == ("/x", b"a=1")
    assert app.scope["client"][0] == "127.0.0.1" and app.scope["server"] == ("127.0.0.1", 80)


async def test_closing_a_response_is_the_client_leaving() -> None:
    """Closing a streamed response mid-body hands the app ``http.disconnect``."""
    app = Streamer()
    async with httpx.AsyncClient(transport=StreamingASGITransport(app),
                                 base_url="http://127.0.0.1") as client:
        async with client.stream("GET", "/") as response:
            assert await anext(response.aiter_bytes()) == b"first"
        async with asyncio.timeout(5):
            await app.done.wait()
    assert app.received[-1] == {"type": "http.disconnect"}


async def test_a_response_that_never_starts_times_out_as_a_read() -> None:
    """The client's read timeout applies to the head, and the app sees the client leave."""
    left = asyncio.Event()

    async def silent(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        left.set()

    async with httpx.AsyncClient(transport=StreamingASGITransport(silent),
                                 base_url="http://127.0.0.1", timeout=0.1) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/")
        async with asyncio.timeout(5):
            await left.wait()


async def test_an_app_that_fails_before_its_response_raises_in_the_test() -> None:
    """A failure before the head is the test's to see, not a made-up response."""
    async def failing(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise LookupError("boom")

    async with httpx.AsyncClient(transport=StreamingASGITransport(failing),
                                 base_url="http://127.0.0.1") as client:
        with pytest.raises(LookupError):
            await client.get("/")


async def test_an_app_that_fails_mid_response_cuts_the_body_off(
        caplog: pytest.LogCaptureFixture) -> None:
    """A failure after the head reaches the reader as a cut-off body, as a reset
    connection would, and is logged as the server logs it."""
    async def half(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})
        raise LookupError("boom")

    async with httpx.AsyncClient(transport=StreamingASGITransport(half),
                                 base_url="http://127.0.0.1") as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/")
    assert "the app failed mid-response" in caplog.text
