"""The ``hubbub.frames`` extension: pre-built frames written raw, and its fallback.

``hubbub serve`` runs :class:`~hubbub.server.websocket.WebSocketProtocol`, which
offers the extension. Here every test of ``test_ws.py`` runs again, next to
tests of the frame bytes themselves and of the hub mounted in FastAPI on
plain uvicorn (no extension: plain ASGI sends, the documented slower path).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode

from hubbub.config import Config
from hubbub.core import PublishItem
from hubbub.protocol.message import BINARY_FRAME, TEXT_FRAME, Message, ws_frame
from hubbub.server import HubServer as Server
from hubbub.server import state as server_state
from hubbub.server import websocket as server_ws
from hubbub.server.websocket import WebSocketProtocol
from hubbub.transports.app import create_app
from hubbub.transports.ws import Room
from hubbub.transports.ws import delivery as ws
from tests.conftest import UNIT, HubServer, free_port, serve_app, store_url
from tests.transports import test_ws

# Every test of the WebSocket door, again, over the frames path (the module's
# own ``hub_server`` fixture below replaces conftest's for them).
globals().update({k: v for k, v in vars(test_ws).items()
                  if k.startswith("test_") or k == "config"})

JSON_PROTO = test_ws.JSON_PROTO


async def _serve(app: Any, max_message_size: int) -> tuple[Server, int, asyncio.Task[None]]:
    return await _serve_with(app, ws_max_size=max_message_size + 64 * 1024)


async def _serve_with(app: Any, **settings: Any) -> tuple[Server, int, asyncio.Task[None]]:
    srv = await serve_app(app, app, **settings)
    return srv.server, int(srv.url.rsplit(":", 1)[1]), srv.task


async def _serve_uvicorn(app: Any) -> tuple[uvicorn.Server, int, asyncio.Task[None]]:
    """``app`` on plain uvicorn: a server with neither hubbub extension."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", ws="websockets-sansio"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(10 * UNIT):
        while not server.started:
            await asyncio.sleep(0.01)
    return server, port, task


@pytest.fixture
async def hub_server(engine: str, tmp_path: Path, config: Config) -> AsyncIterator[HubServer]:
    """A real hub on hubbub's own server, as ``hubbub serve`` runs."""
    app = create_app(store_url(engine, tmp_path), config)
    server, port, task = await _serve(app, config.max_message_size)
    srv = HubServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", app, server, task)
    try:
        yield srv
    finally:
        await srv.stop()


# -- the frame bytes --------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
@pytest.mark.parametrize(("opcode", "op"), [(TEXT_FRAME, Opcode.TEXT),
                                            (BINARY_FRAME, Opcode.BINARY)])
def test_ws_frame_is_what_websockets_serializes(size: int, opcode: int, op: Opcode) -> None:
    payload = b"x" * size
    assert ws_frame(payload, opcode) == Frame(op, payload).serialize(mask=False)


def test_message_frames_are_cached_and_match_the_ops() -> None:
    m = Message("a.b", "ep", 3, 7, 1_700_000_000_000, "id1", b'{"k":"\xc3\xa9"}')
    assert m.ws_frame() == Frame(Opcode.TEXT, m.ws_json()).serialize(mask=False)
    assert m.ws_frame() is m.ws_frame()
    raw = Message("a.b", "ep", 4, 8, 1, "id2", os.urandom(300), "image/png")
    assert raw.ws_msgpack_frame() == Frame(Opcode.BINARY, raw.ws_msgpack()).serialize(mask=False)
    assert json.loads(raw.ws_frame()[4:])["data"] == base64.b64encode(raw.data).decode()


async def _read_http_head(reader: asyncio.StreamReader) -> bytes:
    async with asyncio.timeout(5 * UNIT):
        return await reader.readuntil(b"\r\n\r\n")


async def test_bytes_on_the_wire_are_the_cached_frames(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A raw socket reads exactly the unmasked frames of the stored messages, in order,
    and they (and the reply before them) went out through the extension."""
    writes: list[bytes] = []
    real_send, real_write = WebSocketProtocol.send_frames, WebSocketProtocol.write_frames

    async def sending(self: WebSocketProtocol, data: bytes) -> None:
        writes.append(data)
        await real_send(self, data)

    def writing(self: WebSocketProtocol, data: bytes) -> bool:
        written = real_write(self, data)
        if written:
            writes.append(data)
        return written

    monkeypatch.setattr(WebSocketProtocol, "send_frames", sending)
    monkeypatch.setattr(WebSocketProtocol, "write_frames", writing)
    host, port = hub_server.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + JSON_PROTO.encode()
            + b"\r\n\r\n")
        assert (await _read_http_head(reader)).startswith(b"HTTP/1.1 101")
        sub = json.dumps({"op": "sub", "id": 1, "topics": ["wire.t"]}).encode()
        writer.write(Frame(Opcode.TEXT, sub).serialize(mask=True))
        async with asyncio.timeout(5 * UNIT):
            head = await reader.readexactly(2)
            body = await reader.readexactly(head[1])
        reply = json.loads(body)
        assert reply["op"] == "ok" and reply["sub"] == 1
        async with hub_server.client() as http:
            for i in range(3):
                r = await http.post("/v1/topics/wire.t", json={"i": i, "pad": "é" * 60})
                assert r.status_code == 201
        stored = await hub_server.hub.engine.read("wire.t", 0, 10)
        expected = b"".join(Frame(Opcode.TEXT, m.ws_json()).serialize(mask=False)
                            for m in stored)
        async with asyncio.timeout(5 * UNIT):
            got = await reader.readexactly(len(expected))
        assert got == expected
        # The reply to the sub went out through the extension too (send_obj).
        assert b"".join(writes) == head + body + expected
    finally:
        writer.close()


@pytest.mark.parametrize("engine", ["memory"])
async def test_compressing_client_gets_plain_frames(hub_server: HubServer) -> None:
    """A client offering permessage-deflate gets no extension (hubbub's server
    negotiates none: frames go out pre-built) and plain frames (RSV1 clear)."""
    async with connect(hub_server.ws_url + "/v1/ws", subprotocols=[JSON_PROTO],  # type: ignore[list-item]
                       proxy=None, compression="deflate") as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["z.t"], "after": "start"}))
        async with hub_server.client() as http:
            await http.post("/v1/topics/z.t", json={"n": 1})
        async with asyncio.timeout(5 * UNIT):
            assert json.loads(await ws.recv())["op"] == "ok"
            msg = json.loads(await ws.recv())
        assert msg["op"] == "msg" and msg["data"] == {"n": 1}


@pytest.mark.parametrize("engine", ["memory"])
async def test_replay_in_big_writes_arrives_whole(hub_server: HubServer) -> None:
    """A replay of many pages (each one write) arrives complete, in order, both codecs."""
    hub = hub_server.hub
    await hub.publish_batch([PublishItem("big.t", b'{"i":%d}' % i)
                             for i in range(1200)])
    for proto in (JSON_PROTO, test_ws.MSGPACK_PROTO):
        async with test_ws.ws_client(hub_server, proto) as c:
            await c.ok({"op": "sub", "id": 1, "topics": ["big.t"], "after": "start"})
            got = list(c.pushed)
            while len(got) < 1200:
                got.append(await c.recv())
        assert [f["data"]["i"] for f in got] == list(range(1200))


@pytest.mark.parametrize("engine", ["memory"])
async def test_idle_subscriptions_hold_no_task_and_a_burst_is_one_write(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Live and idle, a subscription parks (no pump task); the messages of one
    publish reach it in one write, and it parks again."""
    writes: list[bytes] = []
    real_write = WebSocketProtocol.write_frames

    def writing(self: WebSocketProtocol, data: bytes) -> bool:
        written = real_write(self, data)
        if written:
            writes.append(data)
        return written

    monkeypatch.setattr(WebSocketProtocol, "write_frames", writing)

    def pumps() -> list[asyncio.Task[object]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("hubbub-ws-sub-")]

    hub = hub_server.hub
    async with test_ws.ws_client(hub_server) as c:
        await c.ok({"op": "sub", "id": 1, "topics": ["park.t"]})
        async with asyncio.timeout(5 * UNIT):
            while pumps():
                await asyncio.sleep(0.01)
        await hub.publish_batch([PublishItem("park.t", b'{"i":%d}' % i) for i in range(5)])
        got = await c.messages(5)
        assert [f["data"]["i"] for f in got] == list(range(5))
        assert len(writes) == 1 and writes[0].count(b'"op":"msg"') == 5
        assert pumps() == []


async def test_a_flush_holds_back_at_most_its_limit_per_connection(
    hub_server: HubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flush's writes are held back and made at its end (ServerState.gathered_writes);
    a connection with more ready than GATHER_LIMIT is answered as a full buffer
    would be, and its pump sends the rest after: every message arrives, in order."""
    monkeypatch.setattr(server_ws, "GATHER_LIMIT", 100)
    monkeypatch.setattr(ws, "PAGE", 10)  # a page under this module's buffer (64)
    gathered: list[int] = []
    real_write_all = server_state.write_all  # what gathered_writes calls

    def recording(targets: Any, data: Any, *helper: Any) -> None:
        gathered.append(sum(d.count(b'"op":"msg"') for d in data))
        real_write_all(targets, data, *helper)

    monkeypatch.setattr(server_state, "write_all", recording)
    hub = hub_server.hub
    count = 3 * 10 + 7
    async with test_ws.ws_client(hub_server) as c:
        await c.ok({"op": "sub", "id": 1, "topics": ["gather.t"]})
        await asyncio.sleep(0.05)  # parked
        await hub.publish_batch([PublishItem("gather.t", b'{"i":%d}' % i) for i in range(count)])
        got = await c.messages(count)
        assert [f["data"]["i"] for f in got] == list(range(count))
    # The flush held back one page, then stopped at the limit: the pump sent
    # the rest, through its own writes.
    assert gathered[0] == 10


async def _raw_ws(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"GET /v1/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n")
    assert (await _read_http_head(reader)).startswith(b"HTTP/1.1 101")
    return reader, writer


async def test_keepalive_pings_share_a_timer_and_close_the_silent() -> None:
    """Every connection is pinged about every ws_ping_interval (one timer for all);
    one that answers stays open, one that never answers is closed (1011)."""
    app = create_app("memory://")
    server, port, task = await _serve_with(app, ws_ping_interval=0.3, ws_ping_timeout=0.3)
    try:
        quiet_r, quiet_w = await _raw_ws(port)
        talk_r, talk_w = await _raw_ws(port)
        # Both wait for their ping on the server's one timer.
        assert server.state is not None
        waiting = [c for bucket in server.state.timer.buckets.values() for c in bucket]
        assert len(waiting) == 2 and all(isinstance(c, WebSocketProtocol) for c in waiting)
        async with asyncio.timeout(10 * UNIT):
            pings = 0
            while pings < 3:  # the talkative client answers each ping with its pong
                head = await talk_r.readexactly(2)
                payload = await talk_r.readexactly(head[1] & 0x7F)
                assert head[0] == 0x89  # FIN + ping
                talk_w.write(Frame(Opcode.PONG, payload).serialize(mask=True))
                pings += 1
            head = await quiet_r.readexactly(2)
            assert head[0] == 0x89
            await quiet_r.readexactly(head[1] & 0x7F)
            head = await quiet_r.readexactly(2)  # no pong: the server gives up
            assert head[0] == 0x88  # FIN + close
            close = await quiet_r.readexactly(head[1] & 0x7F)
            assert int.from_bytes(close[:2], "big") == 1011
        assert not talk_w.is_closing()
        quiet_w.close()
        talk_w.close()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10 * UNIT)
        await app.state.hub.stop()


# -- the fallback: hubbub mounted in someone else's application and server --------


async def test_mounted_in_fastapi_on_plain_uvicorn_falls_back() -> None:
    """No extension (uvicorn's stock protocol): the door sends through ASGI."""
    hub_app = create_app("memory://")
    app = FastAPI()
    app.mount("/hub", hub_app)
    seen: list[dict[str, Any]] = []

    @app.middleware("http")
    async def _noop(request: Any, call_next: Any) -> Any:  # a user's own middleware
        return await call_next(request)

    server, port, task = await _serve_uvicorn(app)
    try:
        async with connect(f"ws://127.0.0.1:{port}/hub/v1/ws",
                           subprotocols=[JSON_PROTO],  # type: ignore[list-item]
                           proxy=None, compression=None) as ws:
            await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["m.t"]}))
            async with asyncio.timeout(5 * UNIT):
                assert json.loads(await ws.recv())["op"] == "ok"
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}/hub") as http:
                for i in range(5):
                    assert (await http.post("/v1/topics/m.t", json=i)).status_code == 201
            async with asyncio.timeout(5 * UNIT):
                for _ in range(5):
                    seen.append(json.loads(await ws.recv()))
        assert [f["data"] for f in seen] == list(range(5))
        assert all(f["op"] == "msg" for f in seen)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10 * UNIT)
        await hub_app.state.hub.stop()


def test_msgpack_frame_of_gap_decodes() -> None:
    """Gap frames built for the raw path are ordinary frames of the codec."""
    payload = msgspec.msgpack.encode({"op": "gap", "sub": 1, "from": 1, "to": 2})
    assert ws_frame(payload, BINARY_FRAME)[2:] == payload


def test_a_batch_joined_once_serves_every_subscriber_of_the_topic() -> None:
    """The frames of a batch are joined once and reused for the next subscriber
    handed the same messages; any other batch is joined afresh."""
    joined = Room().joined
    t = [Message("j.t", "ep", i, 10 + i, 1, f"id{i}", b"%d" % i) for i in (1, 2, 3)]
    u = Message("j.u", "ep", 1, 12, 1, "idu", b'"u"')
    whole = b"".join(m.ws_frame() for m in t)
    first = joined(list(t), False)
    assert first == whole
    assert joined(list(t), False) is first  # another subscriber's list, same messages
    assert joined(t[:2], False) == whole[: len(t[0].ws_frame()) + len(t[1].ws_frame())]
    mixed = [t[0], u, t[1]]  # a wildcard subscriber's batch: joined for itself
    assert joined(mixed, False) == b"".join(m.ws_frame() for m in mixed)
    assert joined(list(t), True) == b"".join(m.ws_msgpack_frame() for m in t)
    assert joined(t[2:], False) == t[2].ws_frame()


def test_each_room_joins_for_itself() -> None:
    """Two doors' rooms share no batch: each joins the same messages afresh."""
    t = [Message("j.t", "ep", i, 10 + i, 1, f"id{i}", b"%d" % i) for i in (1, 2)]
    first = Room().joined(list(t), False)
    again = Room().joined(list(t), False)
    assert again == first
    assert again is not first
