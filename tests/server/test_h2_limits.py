"""HTTP/2's limits and defences: flow control both ways, stream limits,
timers, slow readers, and the attacks that must be refused."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    ResponseReceived,
    StreamEnded,
    StreamReset,
)
from hyperframe.frame import ContinuationFrame, HeadersFrame

from hubbub.server.h2frames import PREFACE, HeaderBlockWatch

from ..conftest import UNIT
from .conftest import H2Hub, RawH2, StartHub

pytestmark = pytest.mark.timeout(60 * UNIT)

BIG = 900 * 1024  # under the default 1 MiB message limit, far over every window


def ended(sid: int) -> Any:
    return lambda e: isinstance(e, StreamEnded | StreamReset) and e.stream_id == sid


def terminated(e: Any) -> bool:
    return isinstance(e, ConnectionTerminated)


async def test_large_body_up_and_down_through_small_windows(h2_hub: H2Hub) -> None:
    """A body larger than every window goes up in pieces, and a response
    comes down through a 1 KiB window, each acknowledged as read."""
    payload = bytes(range(256)) * (BIG // 256)
    async with h2_hub.client() as client:
        r = await client.post("/v1/topics/big.up", content=payload,
                              headers={"content-type": "application/octet-stream"})
        assert r.status_code == 201, r.text
    raw = await RawH2.open(h2_hub, window=1024)
    try:
        sid = raw.request("GET", "/v1/topics/big.up/messages")
        events = await raw.events(ended(sid))
        body = b"".join(e.data for e in events if isinstance(e, DataReceived))
        assert isinstance(events[-1], StreamEnded)
        assert max(len(e.data) for e in events if isinstance(e, DataReceived)) <= 1024
        assert len(body) > len(payload)  # base64 in JSON
    finally:
        raw.close()


async def test_a_window_left_shut_is_reset_after_the_write_deadline(
        start_h2_hub: StartHub) -> None:
    """A stream whose reader never opens its window is reset (CANCEL); the
    connection and its other streams go on."""
    hub = await start_h2_hub(write_deadline=0.3 * UNIT)
    async with hub.client() as client:
        r = await client.post("/v1/topics/big.down", content=b"x" * BIG,
                              headers={"content-type": "application/octet-stream"})
        assert r.status_code == 201
    raw = await RawH2.open(hub, window=1024)
    try:
        sid = raw.request("GET", "/v1/topics/big.down/messages")
        events = await raw.events(ended(sid), ack=False)
        assert isinstance(events[-1], StreamReset)
        assert events[-1].error_code == ErrorCodes.CANCEL
        sid = raw.request("GET", "/healthz")
        events = await raw.events(ended(sid))
        assert [e.headers for e in events if isinstance(e, ResponseReceived)][0][0] == (
            b":status", b"200")
    finally:
        raw.close()


async def test_a_socket_left_unread_is_cut_off(start_h2_hub: StartHub) -> None:
    """A client that stops reading its socket is cut off once the server's
    buffer has waited ``write_deadline``, however wide its windows."""
    hub = await start_h2_hub(write_deadline=0.3 * UNIT, send_buffer=16 * 1024)
    async with hub.client() as client:
        r = await client.post("/v1/topics/big.stall", content=b"x" * BIG,
                              headers={"content-type": "application/octet-stream"})
        assert r.status_code == 201
    raw = await RawH2.open(hub, window=2**31 - 1, rcvbuf=4096)
    raw.conn.increment_flow_control_window(2**30)
    for _ in range(16):
        raw.request("GET", "/v1/topics/big.stall/messages")
    async with asyncio.timeout(20 * UNIT):
        while not hub.lost:
            await asyncio.sleep(0.05)
    assert hub.protocols[0].streams == {} or all(
        s.gone.is_set() for s in hub.protocols[0].streams.values())
    raw.close()


async def test_many_concurrent_streams_on_one_connection(h2_hub: H2Hub) -> None:
    """Two hundred requests at once share one connection (httpx keeps to
    the advertised 100 streams at a time) and all succeed."""
    async with h2_hub.client() as client:
        results = await asyncio.gather(*(
            client.post(f"/v1/topics/many.t{i % 7}", json=i) for i in range(200)))
    assert [r.status_code for r in results] == [201] * 200
    assert len(h2_hub.protocols) == 1


async def test_streams_past_the_limit_are_refused(start_h2_hub: StartHub) -> None:
    """Streams opened past SETTINGS_MAX_CONCURRENT_STREAMS before the client
    saw it get REFUSED_STREAM; those within it are served."""
    hub = await start_h2_hub(h2_max_concurrent_streams=3)
    raw = await RawH2.open(hub)
    try:
        sids = [raw.request("GET", "/v1/topics/lim.a/messages?after=end&wait=1")
                for _ in range(5)]
        events = await raw.events(ended(sids[-1]))
        refused = {e.stream_id for e in events
                   if isinstance(e, StreamReset) and e.error_code == ErrorCodes.REFUSED_STREAM}
        assert refused == set(sids[3:])
        events = await raw.events(ended(sids[2]))
        done = {e.stream_id for e in events if isinstance(e, StreamEnded)}
        assert done >= {sids[2]}
    finally:
        raw.close()


async def test_rapid_reset_is_refused(start_h2_hub: StartHub) -> None:
    """Streams opened and reset in a loop (CVE-2023-44487) end the
    connection with GOAWAY ENHANCE_YOUR_CALM; the server serves on."""
    hub = await start_h2_hub(h2_max_resets=50)
    raw = await RawH2.open(hub)
    try:
        for _ in range(200):
            sid = raw.request("GET", "/v1/topics/rr.a/messages?after=end&wait=5")
            raw.conn.reset_stream(sid, ErrorCodes.CANCEL)
            raw.flush()
        events = await raw.events(terminated)
        assert isinstance(events[-1], ConnectionTerminated)
        assert events[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        raw.close()
    async with hub.client() as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_continuation_flood_is_refused(h2_hub: H2Hub) -> None:
    """A header block continued frame after frame without end is refused
    with GOAWAY before it can grow without bound."""
    raw = await RawH2.open(h2_hub)
    try:
        headers = HeadersFrame(1)
        headers.data = b""
        raw.writer.write(headers.serialize())
        for _ in range(200):
            frame = ContinuationFrame(1)
            frame.data = b"\x00" * 1024
            raw.writer.write(frame.serialize())
        events = await raw.events(terminated)
        assert events and isinstance(events[-1], ConnectionTerminated)
        assert events[-1].error_code != ErrorCodes.NO_ERROR
    finally:
        raw.close()


async def test_an_oversized_header_block_is_refused(start_h2_hub: StartHub) -> None:
    """Headers past ``max_header_bytes`` end the connection (ENHANCE_YOUR_CALM)."""
    hub = await start_h2_hub(max_header_bytes=4096)
    raw = await RawH2.open(hub)
    try:
        await raw.events(lambda e: True)  # the server's settings, acknowledged
        raw.conn.send_headers(raw.conn.get_next_available_stream_id(), [
            (b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"127.0.0.1"),
            (b":path", b"/healthz"), (b"x-big", b"y" * 8000)], end_stream=True)
        raw.flush()
        events = await raw.events(terminated)
        assert isinstance(events[-1], ConnectionTerminated)
        assert events[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        raw.close()


async def test_a_header_block_that_never_ends_is_cut_off(start_h2_hub: StartHub) -> None:
    """A header block left open for ``head_timeout`` ends the connection
    (GOAWAY ENHANCE_YOUR_CALM), even with another stream live on it."""
    hub = await start_h2_hub(head_timeout=0.3 * UNIT)
    raw = await RawH2.open(hub)
    try:
        sse = raw.request("GET", "/v1/topics/hb.a/events")
        await raw.events(lambda e: isinstance(e, ResponseReceived) and e.stream_id == sse)
        headers = HeadersFrame(sse + 2)
        headers.data = b""
        raw.writer.write(headers.serialize())
        events = await raw.events(terminated)
        assert isinstance(events[-1], ConnectionTerminated)
        assert events[-1].error_code == ErrorCodes.ENHANCE_YOUR_CALM
    finally:
        raw.close()


def test_header_block_watch_follows_frame_boundaries() -> None:
    """The watch sees a block open at a HEADERS frame without END_HEADERS,
    still open across CONTINUATIONs without it, closed by one with it,
    whatever the bytes' split; DATA payloads are skipped, not read."""
    def frame(kind: int, flags: int, payload: bytes, sid: int = 1) -> bytes:
        return (len(payload).to_bytes(3, "big") + bytes([kind, flags])
                + sid.to_bytes(4, "big") + payload)

    # A DATA payload that looks like a HEADERS frame header must not count.
    before = PREFACE + frame(0x0, 0x0, frame(0x1, 0x0, b""))
    stream = before + frame(0x1, 0x0, b"abc")
    for split in range(1, 12):
        watch = HeaderBlockWatch()
        chunks = [stream[i:i + split] for i in range(0, len(stream), split)]
        seen = [watch.feed(chunk) for chunk in chunks]
        assert seen[-1] is True and not any(seen[:len(before) // split])
        assert watch.feed(frame(0x9, 0x0, b"d")) is True
        assert watch.feed(frame(0x9, 0x4, b"e")) is False
        assert watch.feed(frame(0x1, 0x5, b"f", 3)) is False


@pytest.mark.parametrize("garbage", [
    b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x",  # DATA on stream 0
    b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00",  # WINDOW_UPDATE of 0
    b"\x00\x00\x05\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",  # SETTINGS of 5 bytes
])
async def test_malformed_frames_get_goaway_and_the_server_stays_up(
        h2_hub: H2Hub, garbage: bytes) -> None:
    """A malformed frame ends its connection with a GOAWAY naming the error;
    the next connection is served."""
    raw = await RawH2.open(h2_hub)
    try:
        raw.writer.write(garbage)
        events = await raw.events(terminated)
        assert isinstance(events[-1], ConnectionTerminated)
        assert events[-1].error_code in (ErrorCodes.PROTOCOL_ERROR, ErrorCodes.FRAME_SIZE_ERROR)
    finally:
        raw.close()
    async with h2_hub.client() as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_not_http2_at_all_is_closed(h2_hub: H2Hub) -> None:
    """HTTP/1.1 bytes on a connection that chose h2 are not a preface: closed."""
    raw = await RawH2.open(h2_hub, handshake=False)
    try:
        raw.writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(10 * UNIT):
            while await raw.reader.read(65536):
                pass
    finally:
        raw.close()


async def test_idle_connection_gets_goaway(start_h2_hub: StartHub) -> None:
    """A connection with no stream for ``keepalive_timeout`` gets GOAWAY NO_ERROR."""
    hub = await start_h2_hub(keepalive_timeout=0.3 * UNIT)
    raw = await RawH2.open(hub)
    try:
        sid = raw.request("GET", "/healthz")
        await raw.events(ended(sid))
        events = await raw.events(terminated)
        assert isinstance(events[-1], ConnectionTerminated)
        assert events[-1].error_code == ErrorCodes.NO_ERROR
    finally:
        raw.close()


async def test_stalled_body_gets_408(start_h2_hub: StartHub) -> None:
    """A request body idle for ``body_timeout`` is answered 408 (a problem document)."""
    hub = await start_h2_hub(body_timeout=0.3 * UNIT)
    raw = await RawH2.open(hub)
    try:
        sid = raw.request("POST", "/v1/topics/slow.a", b"{", end=False)
        events = await raw.events(ended(sid))
        heads = [dict(e.headers) for e in events if isinstance(e, ResponseReceived)]
        assert heads[0][b":status"] == b"408"
        assert heads[0][b"content-type"] == b"application/problem+json"
    finally:
        raw.close()


async def test_reset_stream_tells_the_application(h2_hub: H2Hub) -> None:
    """A client's reset reaches the door as ``http.disconnect``: an SSE
    stream's request ends on the server."""
    raw = await RawH2.open(h2_hub)
    try:
        sid = raw.request("GET", "/v1/topics/rs.a/events")
        await raw.events(lambda e: isinstance(e, ResponseReceived))
        assert sid in h2_hub.protocols[0].streams
        raw.conn.reset_stream(sid, ErrorCodes.CANCEL)
        raw.flush()
        async with asyncio.timeout(10 * UNIT):
            while sid in h2_hub.protocols[0].streams:
                await asyncio.sleep(0.01)
    finally:
        raw.close()


async def test_head_has_no_body(h2_hub: H2Hub) -> None:
    """HEAD answers with the headers GET would have and no body."""
    async with h2_hub.client() as client:
        await client.post("/v1/topics/head.a", json={"n": 1})
        get = await client.get("/v1/topics/head.a/messages")
        head = await client.head("/v1/topics/head.a/messages")
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers.get("content-length") == get.headers.get("content-length")


async def test_application_failure_is_a_500(start_h2_hub: StartHub) -> None:
    """An application that fails before answering gets its client a 500
    problem document, and the connection serves on."""
    def failing(hub_app: Any) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["path"] == "/fail":
                raise RuntimeError("boom")
            await hub_app(scope, receive, send)
        return app

    hub = await start_h2_hub(app=failing)
    async with hub.client() as client:
        r = await client.get("/fail")
        assert r.status_code == 500
        assert r.headers["content-type"] == "application/problem+json"
        assert (await client.get("/healthz")).status_code == 200


async def test_connect_is_refused_with_a_problem(h2_hub: H2Hub) -> None:
    """A CONNECT request (no path to serve) gets 405 and no application runs."""
    raw = await RawH2.open(h2_hub)
    try:
        sid = raw.conn.get_next_available_stream_id()
        raw.conn.send_headers(sid, [(b":method", b"CONNECT"), (b":authority", b"example.com:443")],
                              end_stream=True)
        raw.flush()
        events = await raw.events(ended(sid))
        heads = [dict(e.headers) for e in events if isinstance(e, ResponseReceived)]
        assert heads[0][b":status"] == b"405"
        assert heads[0][b"content-type"] == b"application/problem+json"
    finally:
        raw.close()



async def test_shutdown_finishes_running_streams_then_goaway(h2_hub: H2Hub) -> None:
    """``shutdown()`` refuses new streams, lets a running one answer, then
    closes with GOAWAY NO_ERROR."""
    raw = await RawH2.open(h2_hub)
    try:
        poll = raw.request("GET", "/v1/topics/sd.a/messages?after=end&wait=5")
        async with asyncio.timeout(10 * UNIT):
            while not h2_hub.protocols or poll not in h2_hub.protocols[0].streams:
                await asyncio.sleep(0.01)
        h2_hub.protocols[0].shutdown()
        late = raw.request("GET", "/healthz")
        events = await raw.events(ended(late))
        assert isinstance(events[-1], StreamReset)
        assert events[-1].error_code == ErrorCodes.REFUSED_STREAM
        async with h2_hub.client() as client:
            assert (await client.post("/v1/topics/sd.a", json=1)).status_code == 201
        events = await raw.events(terminated)
        assert [e.stream_id for e in events if isinstance(e, StreamEnded)] == [poll]
        assert isinstance(events[-1], ConnectionTerminated)
        assert events[-1].error_code == ErrorCodes.NO_ERROR
    finally:
        raw.close()


@pytest.mark.parametrize(("headers", "body"), [
    ([(b"content-length", b"5")], b"0123456789"),  # DATA longer than content-length
    ([(b"content-length", b"50")], b"0123456789"),  # ... shorter
    ([(b"Content-Type", b"text/plain")], b"x"),  # upper case (RFC 9113 §8.2.1)
    ([(b"connection", b"keep-alive")], b"x"),  # connection-specific (§8.2.2)
    ([(b"transfer-encoding", b"chunked")], b"x"),
    ([(b"te", b"gzip")], b"x"),  # te other than "trailers"
    ([(b"x-split", b"a\r\nb")], b"x"),  # a field value with CR LF (§8.2.1)
])
async def test_malformed_requests_are_refused(
        h2_hub: H2Hub, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """Requests HTTP/2 calls malformed (the smuggling vectors of HTTP/1.1
    among them) never reach a door: the stream or the connection is reset,
    nothing is published, and the server serves on."""
    from h2.config import H2Configuration
    from h2.connection import H2Connection

    raw = await RawH2.open(h2_hub, handshake=False)
    raw.conn = H2Connection(H2Configuration(
        client_side=True, header_encoding=None, validate_outbound_headers=False,
        normalize_outbound_headers=False))
    try:
        raw.conn.initiate_connection()
        sid = raw.conn.get_next_available_stream_id()
        raw.conn.send_headers(sid, [
            (b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"127.0.0.1"),
            (b":path", b"/v1/topics/bad.a"), *headers])
        raw.conn.send_data(sid, body, end_stream=True)
        raw.flush()
        events = await raw.events(lambda e: terminated(e) or ended(sid)(e))
        assert not any(isinstance(e, ResponseReceived) for e in events)
        assert raw.closed or isinstance(events[-1], ConnectionTerminated | StreamReset)
    finally:
        raw.close()
    async with h2_hub.client() as client:
        r = await client.get("/v1/topics/bad.a/messages")
        assert r.status_code == 200 and r.json()["messages"] == []


async def test_a_head_without_a_body_yet_goes_out(start_h2_hub: StartHub) -> None:
    """A response that starts and then waits (a stream before its first
    event) has its head written at once, not held for a body."""
    def waiting(hub_app: Any) -> Any:
        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["path"] != "/wait":
                return await hub_app(scope, receive, send)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"text/event-stream")]})
            while (await receive())["type"] != "http.disconnect":
                pass
        return app

    hub = await start_h2_hub(app=waiting)
    raw = await RawH2.open(hub)
    try:
        raw.request("GET", "/wait")
        events = await raw.events(lambda e: isinstance(e, ResponseReceived))
        assert dict(events[-1].headers)[b":status"] == b"200"
        assert not any(isinstance(e, StreamEnded) for e in events)
    finally:
        raw.close()
