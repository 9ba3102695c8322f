"""WebSocket conformance of hubbub's server (the cases Autobahn checks), over
raw sockets: the handshake's errors, fragmentation, control frames, UTF-8,
close codes, masking, keepalive and the write deadline (hubbub.server.websocket)."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import Awaitable, Callable

import pytest

from hubbub.core import PublishItem
from tests.conftest import UNIT, HubServer
from tests.server.conftest import Raw

Connect = Callable[[], Awaitable[Raw]]
JSON_PROTO = b"hubbub.v1.json"


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0,
                 mask: bool = True) -> bytes:
    """A client frame, masked unless told otherwise."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def handshake(raw: Raw, extra: bytes = b"", version: bytes = b"13") -> bytes:
    raw.send(b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n"
             b"Sec-WebSocket-Version: " + version + b"\r\n"
             b"Sec-WebSocket-Protocol: " + JSON_PROTO + b"\r\n" + extra + b"\r\n")
    async with asyncio.timeout(5 * UNIT):
        return await raw.reader.readuntil(b"\r\n\r\n")


async def read_frame(raw: Raw) -> tuple[int, bytes]:
    async with asyncio.timeout(5 * UNIT):
        b0, b1 = await raw.reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await raw.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await raw.reader.readexactly(8))[0]
        assert b1 & 0x80 == 0, "server frames are not masked"
        return b0 & 0x0F, await raw.reader.readexactly(n)


async def opened(connect: Connect) -> Raw:
    raw = await connect()
    assert (await handshake(raw)).startswith(b"HTTP/1.1 101")
    return raw


async def closed_with(raw: Raw) -> int:
    """The code of the server's close frame (skipping data frames before it)."""
    while True:
        opcode, payload = await read_frame(raw)
        if opcode == 0x8:
            return int.from_bytes(payload[:2], "big") if payload else 1005


SUB = json.dumps({"op": "sub", "id": 1, "topics": ["frag.a"]}).encode()


async def test_a_wrong_version_gets_426_naming_13(connect: Connect) -> None:
    """RFC 6455 §4.4: the answer names the version the server speaks."""
    raw = await connect()
    head = await handshake(raw, version=b"8")
    assert head.startswith(b"HTTP/1.1 426")
    assert b"sec-websocket-version: 13\r\n" in head.lower()


async def test_a_bad_key_gets_400_with_a_reason(connect: Connect) -> None:
    raw = await connect()
    raw.send(b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             b"Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n")
    status, _, body = await raw.response()
    assert status == 400 and "Sec-WebSocket-Key" in json.loads(body)["detail"]


async def test_a_fragmented_message_with_a_ping_inside_is_one_message(connect: Connect) -> None:
    """Fragments are joined; a ping between them is answered at once with its payload."""
    raw = await opened(connect)
    raw.send(client_frame(0x1, SUB[:5], fin=False))
    raw.send(client_frame(0x9, b"hello"))
    raw.send(client_frame(0x0, SUB[5:12], fin=False))
    raw.send(client_frame(0x0, SUB[12:]))
    assert await read_frame(raw) == (0xA, b"hello")
    opcode, payload = await read_frame(raw)
    assert opcode == 0x1 and json.loads(payload)["op"] == "ok"


async def test_unsolicited_pongs_are_ignored(connect: Connect) -> None:
    raw = await opened(connect)
    raw.send(client_frame(0xA, b"x") + client_frame(0x1, SUB))
    opcode, payload = await read_frame(raw)
    assert opcode == 0x1 and json.loads(payload)["op"] == "ok"


@pytest.mark.parametrize(("frame", "code"), [
    (client_frame(0x9, b"x" * 126), 1002),                      # control frame too long
    (client_frame(0x9, b"x", fin=False), 1002),                 # fragmented control frame
    (client_frame(0x1, b"{}", rsv=1), 1002),                    # reserved bits
    (client_frame(0x3, b"{}"), 1002),                           # reserved opcode
    (client_frame(0x0, b"{}"), 1002),                           # nothing to continue
    (client_frame(0x1, b"{}", mask=False), 1002),               # unmasked client frame
    (client_frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"), 1007),
    (client_frame(0x1, b"{", fin=False) + client_frame(0x1, b"}"), 1002),  # new message
    (client_frame(0x8, b"\x03"), 1002),                         # close body of one byte
    (client_frame(0x8, struct.pack("!H", 1005)), 1002),         # a code no peer sends
    (client_frame(0x8, struct.pack("!H", 1000) + b"\xff"), 1007),  # bad reason
], ids=["long-ping", "fragmented-ping", "rsv", "opcode", "continuation", "unmasked",
        "invalid-utf8", "interleaved", "close-1-byte", "close-1005", "close-bad-reason"])
async def test_protocol_errors_close_with_their_code(
    connect: Connect, frame: bytes, code: int
) -> None:
    raw = await opened(connect)
    raw.send(frame)
    assert await closed_with(raw) == code
    assert await raw.at_end()


async def test_invalid_utf8_is_caught_in_the_first_fragment(connect: Connect) -> None:
    raw = await opened(connect)
    raw.send(client_frame(0x1, b"\xff", fin=False))
    assert await closed_with(raw) == 1007


@pytest.mark.parametrize("code", [1000, 1001, 3000, 4999])
async def test_a_close_is_echoed_with_its_code(connect: Connect, code: int) -> None:
    raw = await opened(connect)
    raw.send(client_frame(0x8, struct.pack("!H", code) + b"bye"))
    assert await closed_with(raw) == code
    assert await raw.at_end()


async def test_an_empty_close_is_echoed_empty(connect: Connect) -> None:
    raw = await opened(connect)
    raw.send(client_frame(0x8, b""))
    assert await read_frame(raw) == (0x8, b"")


async def test_a_stalled_reader_is_cut_off_by_the_write_deadline(layer: HubServer) -> None:
    """A subscriber that never reads is cut off once its socket took nothing for
    write_deadline, without waiting for it to read, and is no longer counted."""
    state = layer.server.state
    assert state is not None
    raw = await Raw.open(layer, rcvbuf=4096)
    writer = raw.writer
    try:
        assert (await handshake(raw)).startswith(b"HTTP/1.1 101")
        raw.send(client_frame(0x1, json.dumps(
            {"op": "sub", "id": 1, "topics": ["stall.a"]}).encode()))
        assert json.loads((await read_frame(raw))[1])["op"] == "ok"
        before = len(state.connections)
        # The client reads no more: publish until its socket takes nothing.
        writer.transport.pause_reading()
        payload = b'"' + b"x" * 60_000 + b'"'
        async with asyncio.timeout(20 * UNIT):
            while state.counts.slow_cut_off == 0:
                await layer.hub.publish_batch([PublishItem("stall.a", payload)] * 4)
                await asyncio.sleep(0.05)
            while len(state.connections) >= before:
                await asyncio.sleep(0.02)
    finally:
        writer.close()
    async with layer.client() as http:
        text = (await http.get("/metrics")).text
    assert "hubbub_server_slow_cut_off_total 1.0" in text


async def test_message_frames_take_the_frames_fast_path(
    layer: HubServer, connect: Connect
) -> None:
    """A subscriber's messages go out through ``hubbub.frames`` (counted by the
    server), not through ASGI sends: this fails if the fast path is not taken."""
    state = layer.server.state
    assert state is not None
    raw = await opened(connect)
    raw.send(client_frame(0x1, json.dumps({"op": "sub", "id": 1, "topics": ["fast.a"]}).encode()))
    assert json.loads((await read_frame(raw))[1])["op"] == "ok"
    before = state.counts.frame_writes
    await layer.hub.publish_batch([PublishItem("fast.a", b"%d" % i) for i in range(3)])
    got = [json.loads((await read_frame(raw))[1])["data"] for _ in range(3)]
    assert got == [0, 1, 2]
    assert state.counts.frame_writes > before
