"""HTTP/1.1 conformance of hubbub's server: raw bytes over real sockets.

Malformed and smuggling requests, pipelining, chunked bodies, 100-continue,
keep-alive, HEAD, the slowloris timeouts, the connection limit and the
lingering close after an early answer (hubbub.server.http1).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from hubbub.config import Config
from hubbub.core import PublishItem
from hubbub.server import http1
from hubbub.server.settings import ServerSettings
from hubbub.server.state import ServerState
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubServer, serve_app
from tests.server.conftest import SETTINGS, Raw

Connect = Callable[[], Awaitable[Raw]]

GET = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"


async def test_keep_alive_serves_requests_one_after_another(layer: HubServer, connect: Connect) -> None:
    """One connection carries several requests, each answered whole."""
    raw = await connect()
    for _ in range(3):
        raw.send(GET)
        status, headers, body = await raw.response()
        assert status == 200 and "connection" not in headers and body
    raw.close()


async def test_pipelined_requests_are_answered_in_order(layer: HubServer, connect: Connect) -> None:
    """Requests sent back to back in one write get their answers in their order."""
    raw = await connect()
    raw.send(b"POST /v1/topics/pipe.a HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             b"Content-Length: 1\r\n\r\n1"
             b"GET /v1/topics/pipe.a/messages?after=start HTTP/1.1\r\nHost: localhost\r\n\r\n" + GET)
    first, second, third = (await raw.response(), await raw.response(), await raw.response())
    assert first[0] == 201 and json.loads(first[2])["offset"] == 1
    assert second[0] == 200 and [m["data"] for m in json.loads(second[2])["messages"]] == [1]
    assert third[0] == 200
    raw.close()


async def test_a_chunked_body_is_read_whole(layer: HubServer, connect: Connect) -> None:
    raw = await connect()
    raw.send(b"POST /v1/topics/chunk.a HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\":12}\r\n0\r\n\r\n")
    status, _, body = await raw.response()
    assert status == 201
    raw.send(b"GET /v1/topics/chunk.a/messages?after=start HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert json.loads((await raw.response())[2])["messages"][0]["data"] == {"a": 12}
    raw.close()


async def test_head_has_headers_and_no_body(layer: HubServer, connect: Connect) -> None:
    """HEAD answers with the GET's headers and no body; the connection goes on."""
    raw = await connect()
    raw.send(b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
    async with asyncio.timeout(5 * UNIT):
        head = await raw.reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    raw.send(GET)  # a body after HEAD's head would be read as this status line
    assert (await raw.response())[0] == 200
    raw.close()


async def test_expect_100_continue_gets_100_then_the_answer(layer: HubServer, connect: Connect) -> None:
    raw = await connect()
    raw.send(b"POST /v1/topics/cont.a HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    async with asyncio.timeout(5 * UNIT):
        assert await raw.reader.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
    raw.send(b"42")
    assert (await raw.response())[0] == 201
    raw.close()


async def test_an_early_answer_to_100_continue_closes_the_connection(layer: HubServer, connect: Connect) -> None:
    """A final answer before the body (a bad topic) ends the connection: the body
    that may still come is never read as a request."""
    raw = await connect()
    raw.send(b"POST /v1/topics/bad..topic HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n"
             b"Content-Length: 5\r\n\r\n")
    status, headers, body = await raw.response()
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["code"] == "invalid-topic"
    assert await raw.at_end()


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\nBad Header: y\r\n\r\n",
    b"NOT A REQUEST\r\n\r\n",
    # Request smuggling: conflicting framing, duplicate or invalid lengths, folding.
    b"POST /v1/topics/s.a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /v1/topics/s.a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"
    b"abcd",
    b"POST /v1/topics/s.a HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"
    b"abc",
    b"POST /v1/topics/s.a HTTP/1.1\r\nHost: localhost\r\nContent-Length: +3\r\n\r\nabc",
    b"POST /v1/topics/s.a HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: localhost\r\nX-A: b\r\n  folded\r\n\r\n",
], ids=["space-in-name", "garbage", "cl-and-te", "two-lengths", "same-length-twice",
        "signed-length", "te-not-chunked-last", "obs-fold"])
async def test_malformed_and_smuggling_requests_get_400_and_close(
    connect: Connect, request_bytes: bytes
) -> None:
    raw = await connect()
    raw.send(request_bytes)
    status, headers, body = await raw.response()
    assert status == 400 and headers["connection"] == "close"
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 400
    assert await raw.at_end()


async def test_a_head_past_the_limit_gets_431(layer: HubServer, connect: Connect) -> None:
    raw = await connect()
    raw.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n")
    status, _, body = await raw.response()
    assert status == 431 and json.loads(body)["code"] == "headers-too-large"
    assert await raw.at_end()


async def test_trickled_headers_are_cut_off_by_the_head_timeout(layer: HubServer, connect: Connect) -> None:
    """Slowloris: a head sent a byte at a time never completes; 408 and close."""
    raw = await connect()
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")

    async def trickle() -> None:
        for _ in range(100):
            raw.send(b"X")
            await asyncio.sleep(0.05)

    task = asyncio.create_task(trickle())
    try:
        status, headers, _ = await raw.response()
        assert status == 408 and headers["connection"] == "close"
    finally:
        task.cancel()
    assert layer.server.state is not None and layer.server.state.counts.timed_out >= 1


async def test_a_body_that_never_completes_gets_408(layer: HubServer, connect: Connect) -> None:
    raw = await connect()
    raw.send(b"POST /v1/topics/slow.a HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
             b"Content-Length: 10\r\n\r\n12")
    status, _, body = await raw.response()
    assert status == 408 and json.loads(body)["code"] == "timeout"
    assert await raw.at_end()


async def test_a_silent_connection_is_closed(layer: HubServer, connect: Connect) -> None:
    """A connection that sends nothing is closed once the head timeout passes."""
    raw = await connect()
    assert await raw.at_end()


async def test_an_idle_keep_alive_connection_is_closed(layer: HubServer, connect: Connect) -> None:
    raw = await connect()
    raw.send(GET)
    assert (await raw.response())[0] == 200
    assert await raw.at_end()


async def test_past_max_connections_a_connection_gets_503(layer: HubServer, connect: Connect) -> None:
    """The connection over the limit is answered 503 and closed; the others are served."""
    held = [await connect() for _ in range(int(SETTINGS["max_connections"]))]
    for raw in held:  # each is counted before the next one opens
        raw.send(GET)
        assert (await raw.response())[0] == 200
    extra = await connect()
    status, headers, body = await extra.response()
    assert status == 503 and headers["retry-after"] == "1"
    assert json.loads(body)["code"] == "unavailable"
    assert await extra.at_end()
    for raw in held:
        raw.close()


async def test_a_plain_get_of_the_websocket_path_gets_426(layer: HubServer, connect: Connect) -> None:
    raw = await connect()
    raw.send(b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\n\r\n")
    status, headers, body = await raw.response()
    assert status == 426 and headers["upgrade"] == "websocket"
    assert json.loads(body)["code"] == "upgrade-required"
    raw.close()


async def test_an_early_413_with_connection_close_is_read_whole(layer: HubServer) -> None:
    """Lingering close: a client still sending a 20 MB body reads the whole 413,
    then the end of the stream, and no reset."""
    port = int(layer.url.rsplit(":", 1)[1])
    received = await asyncio.wait_for(asyncio.to_thread(_post_20_mb, port), 20 * UNIT)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["code"] == "payload-too-large"


def _post_20_mb(port: int) -> bytes:
    """What a client that sends a 20 MB body, reading meanwhile, receives."""
    size = 20 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", port), timeout=10 * UNIT) as sock:
        sock.sendall(b"POST /v1/topics/big.a HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                     b"Content-Type: application/octet-stream\r\n"
                     b"Content-Length: %d\r\n\r\n" % size)
        stop = threading.Event()

        def keep_sending() -> None:
            chunk = b"x" * 65536
            sent = 0
            try:
                while sent < size and not stop.is_set():
                    sent += sock.send(chunk)
            except OSError:
                pass

        sender = threading.Thread(target=keep_sending)
        sender.start()
        received = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                received += data
        finally:
            stop.set()
            sender.join(10 * UNIT)
    return received


async def test_a_stalled_sse_reader_is_cut_off_by_the_write_deadline(layer: HubServer) -> None:
    """An SSE client that stops reading is cut off once its socket took nothing
    for write_deadline, and its stream ends (the connection is no longer counted)."""
    state = layer.server.state
    assert state is not None
    raw = await Raw.open(layer, rcvbuf=4096)
    reader, writer = raw.reader, raw.writer
    try:
        writer.write(b"GET /v1/topics/stall.s/events?after=start HTTP/1.1\r\nHost: localhost\r\n\r\n")
        async with asyncio.timeout(5 * UNIT):
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            await reader.readuntil(b"event: ready")
        before = len(state.connections)
        writer.transport.pause_reading()
        payload = b'"' + b"x" * 60_000 + b'"'
        async with asyncio.timeout(20 * UNIT):
            while state.counts.slow_cut_off == 0:
                await layer.hub.publish_batch([PublishItem("stall.s", payload)] * 4)
                await asyncio.sleep(0.05)
            while len(state.connections) >= before:
                await asyncio.sleep(0.02)
    finally:
        writer.close()


async def test_the_access_log_has_a_line_per_response(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """``--access-log``: one line per response, whole responses included."""
    caplog.set_level(logging.INFO, logger="hubbub.access")
    raw = await connect()
    raw.send(GET + b"GET /v1/topics/log.a/messages?after=start HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert (await raw.response())[0] == 200 and (await raw.response())[0] == 200
    async with asyncio.timeout(5 * UNIT):
        while len(caplog.records) < 2:
            await asyncio.sleep(0.01)
    lines = [r.getMessage() for r in caplog.records if r.name == "hubbub.access"]
    assert lines[0].endswith('"GET /healthz HTTP/1.1" 200')
    assert lines[1].endswith('"GET /v1/topics/log.a/messages?after=start HTTP/1.1" 200')


async def test_an_upgrade_to_anything_but_websocket_is_ignored(connect: Connect) -> None:
    """``Upgrade: h2c`` (curl --http2 over plain HTTP) is served over HTTP/1.1,
    and the connection then ends."""
    raw = await connect()
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade, HTTP2-Settings\r\n"
             b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    status, headers, _ = await raw.response()
    assert status == 200 and headers["connection"] == "close"
    assert await raw.at_end()


async def test_a_pipelined_head_left_unfinished_times_out(connect: Connect) -> None:
    """A head begun behind a running request has the head timeout once that is answered."""
    raw = await connect()
    raw.send(GET + b"GET /healthz HTTP/1.1\r\nHo")
    assert (await raw.response())[0] == 200
    status, _, _ = await raw.response()
    assert status == 408


async def test_header_names_reach_the_app_in_lower_case_however_many_there_are() -> None:
    """Names are lowered once each and shared (an idle WebSocket's scope keeps
    its headers); made-up names past the table's bound are lowered each time."""
    hub_app = create_app("memory://", Config())
    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/echo":
            seen.append(scope["headers"])
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await hub_app(scope, receive, send)

    srv = await serve_app(app, hub_app, **SETTINGS)
    try:
        raw = await Raw.open(srv)
        names = [f"X-Made-Up-{i}" for i in range(http1.LOWER_NAMES + 40)]
        for start in range(0, len(names), 40):
            batch = names[start:start + 40]
            raw.send(b"GET /echo HTTP/1.1\r\nHOST: localhost\r\n"
                     + b"".join(b"%s: v\r\n" % n.encode() for n in batch) + b"\r\n")
            status, _, _ = await raw.response()
            assert status == 204
            assert seen[-1] == [(b"host", b"localhost"),
                                *[(n.lower().encode(), b"v") for n in batch]]
        raw.close()
    finally:
        await srv.stop()
    assert len(http1._LOWER) <= http1.LOWER_NAMES


def test_a_listening_address_is_one_tuple_for_every_connection() -> None:
    state = ServerState(None, ServerSettings(), asyncio.new_event_loop())
    try:
        first = state.listening(("127.0.0.1", 8080))
        assert state.listening(("127.0.0.1", 8080)) is first
        assert state.listening(None) is None
        for port in range(100):  # a wildcard listener's many local addresses: bounded
            assert state.listening(("10.0.0.1", port)) == ("10.0.0.1", port)
        assert state.listening(("127.0.0.1", 8080)) is first
    finally:
        state.loop.close()
