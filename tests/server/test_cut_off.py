"""Slow consumers cut off by the write deadline, with their resume cursor
(:mod:`hubbub.server.websocket`, :mod:`hubbub.server.http1`): the door's last
words are queued after what the client has not read, over real sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from h2.events import DataReceived, StreamEnded, StreamReset

from hubbub.config import Config
from hubbub.core import PublishItem
from hubbub.server.state import TICK
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubServer, serve_app
from tests.server.conftest import SETTINGS, Raw, RawH2, StartHub
from tests.server.test_websocket import client_frame, handshake, read_frame

pytestmark = pytest.mark.timeout(60 * UNIT)

PAYLOAD = b'"' + b"x" * 60_000 + b'"'
#: Seconds a stalled client of these tests has to take its last words.
GRACE = 5.0 * UNIT
#: What the loop may add to a deadline on a busy machine.
SLACK = 0.3 * UNIT

Start = Callable[..., Awaitable[HubServer]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    """Start hubs with the layer's settings and these changes; all stopped at the end."""
    started: list[HubServer] = []

    async def start(**changes: float) -> HubServer:
        app = create_app("memory://", Config())
        srv = await serve_app(app, app, ws_max_size=Config().max_message_size + 64 * 1024,
                              **{**SETTINGS, **changes})
        started.append(srv)
        return srv

    yield start
    for srv in started:
        await srv.stop()


async def publish_until_cut_off(srv: HubServer, topic: str) -> int:
    """Publish big messages until the server cut a client off; the last offset."""
    state = srv.server.state
    assert state is not None
    return await publish_until(srv.hub, topic, lambda: state.counts.slow_cut_off > 0)


async def stall(srv: HubServer, raw: Raw, topic: str) -> int:
    """``raw`` stops reading; publish to ``topic`` until the server cut it off,
    which stops counting it at once. The last offset published."""
    state = srv.server.state
    assert state is not None
    before = len(state.connections)
    raw.writer.transport.pause_reading()
    last = await publish_until_cut_off(srv, topic)
    assert len(state.connections) == before - 1
    return last


async def publish_until(hub: Any, topic: str, done: Callable[[], bool]) -> int:
    """Publish big messages to ``topic`` until ``done()``; the last offset."""
    last = 0
    async with asyncio.timeout(20 * UNIT):
        while not done():
            results = await hub.publish_batch([PublishItem(topic, PAYLOAD)] * 4)
            last = results[-1].message.offset
            await asyncio.sleep(0.05)
    return last


def tcp_closed(raw: Raw) -> bool:
    """Whether the kernel says the client's socket is closed (a reset came),
    read without reading the socket (Linux ``TCP_INFO``: its first byte)."""
    sock = raw.writer.get_extra_info("socket")
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    return bool(info[0] == 7)  # TCP_CLOSE


async def resumed_offsets(srv: Any, topic: str, cursor: str) -> list[int]:
    """The offsets a poll from ``cursor`` gets, page after page."""
    offsets: list[int] = []
    async with srv.client() as http:
        while True:
            # A connection per page: the layer's keep-alive timeout is short.
            r = await http.get(f"/v1/topics/{topic}/messages",
                               params={"after": cursor, "limit": 20},
                               headers={"connection": "close"})
            assert r.status_code == 200, r.text
            page = r.json()
            if not page["messages"]:
                return offsets
            offsets += [m["offset"] for m in page["messages"]]
            cursor = page["cursor"]


async def metric(srv: Any, line: str) -> bool:
    async with srv.client() as http:
        return line in (await http.get("/metrics")).text


async def subscribe_ws(raw: Raw, topic: str) -> None:
    """Open a WebSocket on ``raw`` and subscribe to ``topic`` from its end."""
    assert (await handshake(raw)).startswith(b"HTTP/1.1 101")
    raw.send(client_frame(0x1, json.dumps({"op": "sub", "id": 1, "topics": [topic]}).encode()))
    assert json.loads((await read_frame(raw))[1])["op"] == "ok"


async def subscribe_sse(raw: Raw, topic: str) -> bytes:
    """Open an SSE stream of ``topic`` on ``raw``; the body up to ``ready``."""
    raw.send(b"GET /v1/topics/%s/events HTTP/1.1\r\nHost: localhost\r\n\r\n" % topic.encode())
    async with asyncio.timeout(5 * UNIT):
        head = await raw.reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"transfer-encoding: chunked" in head
        return await raw.reader.readuntil(b"event: ready")


async def check_resume(srv: Any, topic: str, received: list[int], last: int, cursor: str,
                       door: str) -> None:
    """The client got offsets 1 to some n < ``last`` in order; from ``cursor`` a
    resume gets exactly n+1 to ``last``; ``door`` counted one slow consumer."""
    assert received == list(range(1, len(received) + 1))
    assert received and received[-1] < last  # it did miss some
    assert await resumed_offsets(srv, topic, cursor) == list(range(received[-1] + 1, last + 1))
    assert await metric(srv, f'hubbub_slow_consumer_disconnects_total{{door="{door}"}} 1.0')


async def test_a_stalled_websocket_gets_4008_with_its_cursor_after_what_it_missed(
        start: Start) -> None:
    """A subscriber that stops reading is cut off by the write deadline without
    being waited for; when it reads again it gets everything queued for it,
    then the close op and a 4008 close whose reason carries a cursor from which
    a resume gets exactly what it missed. The door counts it as a slow consumer."""
    srv = await start(cut_off_grace=GRACE)
    raw = await Raw.open(srv, rcvbuf=4096)
    try:
        await subscribe_ws(raw, "cut.ws")
        last = await stall(srv, raw, "cut.ws")
        raw.writer.transport.resume_reading()
        received: list[int] = []
        ops: list[dict[str, object]] = []
        while True:
            opcode, payload = await read_frame(raw)
            if opcode == 0x8:
                break
            frame = json.loads(payload)
            ops.append(frame)
            if frame["op"] == "msg":
                received.append(frame["offset"])
        code = struct.unpack("!H", payload[:2])[0]
        reason = payload[2:].decode()
        assert await raw.at_end()
    finally:
        raw.close()
    assert code == 4008
    assert ops[-1]["op"] == "close" and ops[-1]["code"] == 4008
    assert reason.startswith("slow consumer; resume from ")
    cursor = reason.removeprefix("slow consumer; resume from ")
    assert ops[-1]["subs"] == {"1": cursor}
    await check_resume(srv, "cut.ws", received, last, cursor, "ws")


def dechunk(data: bytes) -> tuple[bytes, bool]:
    """The body of a chunked response, and whether its last chunk came."""
    body = bytearray()
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return bytes(body), data == b"\r\n"
        body += data[:size]
        data = data[size + 2:]
    return bytes(body), False


def sse_events(body: bytes) -> list[tuple[str, dict[str, object]]]:
    """(event, data) of each event of a stream (comments and ``retry:`` skipped)."""
    events = []
    for block in body.decode().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n")
                      if line and not line.startswith((":", "retry:")))
        if "event" in fields:
            events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_a_stalled_sse_stream_ends_with_an_error_event_and_its_cursor(
        start: Start) -> None:
    """An SSE client that stops reading is cut off by the write deadline; when it
    reads again it gets what was queued for it, then the ``error`` event
    (slow-consumer, with a cursor from which a resume gets exactly what it
    missed) and the response's end. The door counts it as a slow consumer."""
    srv = await start(cut_off_grace=GRACE)
    raw = await Raw.open(srv, rcvbuf=4096)
    try:
        start_of_stream = await subscribe_sse(raw, "cut.sse")
        last = await stall(srv, raw, "cut.sse")
        raw.writer.transport.resume_reading()
        async with asyncio.timeout(10 * UNIT):
            rest = await raw.reader.read()
    finally:
        raw.close()
    body, ended = dechunk(start_of_stream + rest)
    assert ended
    events = sse_events(body)
    assert events[0][0] == "ready"
    received = [int(data["offset"]) for kind, data in events if kind == "message"]
    kind, error = events[-1]
    assert kind == "error" and error["code"] == "slow-consumer"
    await check_resume(srv, "cut.sse", received, last, str(error["cursor"]), "sse")


@pytest.mark.parametrize("subscribe", [subscribe_ws, subscribe_sse], ids=["ws", "sse"])
async def test_a_client_that_never_reads_again_is_gone_after_the_grace(
        start: Start, subscribe: Callable[[Raw, str], Awaitable[object]]) -> None:
    """A cut-off client that takes nothing more is reset within the grace and a
    tick of the cut-off, and stops being counted at the cut-off itself."""
    grace = 0.3 * UNIT
    srv = await start(cut_off_grace=grace)
    raw = await Raw.open(srv, rcvbuf=4096)
    try:
        await subscribe(raw, "cut.gone")
        await stall(srv, raw, "cut.gone")
        loop = asyncio.get_running_loop()
        cut = loop.time()
        async with asyncio.timeout(10 * UNIT):
            while not tcp_closed(raw):
                await asyncio.sleep(0.01)
        assert loop.time() - cut <= grace + TICK + SLACK
    finally:
        raw.close()


async def test_a_stalled_sse_stream_over_http2_ends_with_an_error_event_and_its_cursor(
        start_h2_hub: StartHub) -> None:
    """Over HTTP/2 too: a stream whose client stops reading its socket ends, at
    the write deadline, with the rest of what it was sending and the ``error``
    event whose cursor resumes exactly; the connection stops being counted at once."""
    hub = await start_h2_hub(write_deadline=0.5 * UNIT, send_buffer=16 * 1024,
                             cut_off_grace=GRACE)
    raw = await RawH2.open(hub, window=2**31 - 1, rcvbuf=4096)
    raw.conn.increment_flow_control_window(2**30)
    raw.flush()
    try:
        sid = raw.request("GET", "/v1/topics/cut.h2/events")
        seen = await raw.events(
            lambda e: isinstance(e, DataReceived) and b"event: ready" in e.data)
        raw.writer.transport.pause_reading()
        last = await publish_until(hub.app.state.hub, "cut.h2", lambda: bool(hub.lost))
        raw.writer.transport.resume_reading()
        seen += await raw.events(
            lambda e: isinstance(e, StreamEnded | StreamReset) and e.stream_id == sid)
    finally:
        raw.close()
    assert isinstance(seen[-1], StreamEnded)
    body = b"".join(e.data for e in seen if isinstance(e, DataReceived) and e.stream_id == sid)
    events = sse_events(body)
    assert events[0][0] == "ready"
    received = [int(data["offset"]) for kind, data in events if kind == "message"]
    kind, error = events[-1]
    assert kind == "error" and error["code"] == "slow-consumer"
    await check_resume(hub, "cut.h2", received, last, str(error["cursor"]), "sse")


async def test_a_stalled_response_without_last_words_never_looks_whole() -> None:
    """A streaming response whose app registered no farewell is reset when its
    client is cut off: what the client reads never ends with the last chunk."""
    hub_app = create_app("memory://", Config())

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/stream":
            await hub_app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:  # until the server cancels it: a send after the end is dropped
            await send({"type": "http.response.body", "body": PAYLOAD, "more_body": True})
            await asyncio.sleep(0)

    srv = await serve_app(app, hub_app, **{**SETTINGS, "cut_off_grace": GRACE})
    state = srv.server.state
    assert state is not None
    raw = await Raw.open(srv, rcvbuf=4096)
    try:
        raw.send(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        async with asyncio.timeout(5 * UNIT):
            head = await raw.reader.readuntil(b"\r\n\r\n")
        raw.writer.transport.pause_reading()
        async with asyncio.timeout(20 * UNIT):
            while state.counts.slow_cut_off == 0:
                await asyncio.sleep(0.02)
        raw.writer.transport.resume_reading()
        async with asyncio.timeout(10 * UNIT):
            try:
                rest = await raw.reader.read()
            except ConnectionResetError:
                rest = b""
        assert b"transfer-encoding: chunked" in head
        assert not rest.endswith(b"0\r\n\r\n")
    finally:
        raw.close()
        await srv.stop()
