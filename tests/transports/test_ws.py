"""The WebSocket door, over real sockets, on every engine.

Clients are the third-party ``websockets`` library; the hub is a real uvicorn
server (the ``hub_server`` fixture). Every wait is bounded in ``UNIT``s.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hubbub.config import Config
from hubbub.core import PublishItem
from hubbub.transports.ws import MAX_SUBSCRIPTIONS
from tests.conftest import UNIT, HubServer

# Every test here speaks WebSocket: hubbub's own server on a loopback port.
pytestmark = pytest.mark.sockets

JSON_PROTO = "hubbub.v1.json"
MSGPACK_PROTO = "hubbub.v1.msgpack"
REPLIES = ("ok", "err", "pong")


@pytest.fixture
def config() -> Config:
    return Config.from_dict({
        "namespaces": {
            "tiny": {"history_size": 5},
            "small": {"max_message_size": 1000},
        },
        "server": {"buffer": 64},
    })


class Client:
    """A hubbub WebSocket client: replies by op id, pushed frames kept in order."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.binary = ws.subprotocol == MSGPACK_PROTO
        self.pushed: deque[dict[str, Any]] = deque()

    async def send(self, frame: dict[str, Any]) -> None:
        if self.binary:
            await self.ws.send(msgspec.msgpack.encode(frame))
        else:
            await self.ws.send(json.dumps(frame))

    async def recv(self, wait: float = 5 * UNIT) -> dict[str, Any]:
        async with asyncio.timeout(wait):
            raw = await self.ws.recv()
        frame: dict[str, Any] = (
            msgspec.msgpack.decode(raw) if isinstance(raw, bytes) else json.loads(raw))
        return frame

    async def op(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send an op and return its reply; frames pushed meanwhile are kept."""
        await self.send(frame)
        while True:
            got = await self.recv()
            if got["op"] in REPLIES and got["id"] == frame["id"]:
                return got
            self.pushed.append(got)

    async def ok(self, frame: dict[str, Any]) -> dict[str, Any]:
        reply = await self.op(frame)
        assert reply["op"] in ("ok", "pong"), reply
        return reply

    async def next(self, wait: float = 5 * UNIT) -> dict[str, Any]:
        """The next pushed frame (msg, gap, close)."""
        if self.pushed:
            return self.pushed.popleft()
        return await self.recv(wait)

    async def messages(self, n: int) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while len(out) < n:
            frame = await self.next()
            assert frame["op"] == "msg", frame
            out.append(frame)
        return out

    async def quiet(self, wait: float = 0.2 * UNIT) -> None:
        """Assert nothing is pushed for a while (a ping round trip, then a short wait)."""
        await self.ok({"op": "ping", "id": "quiet"})
        assert not self.pushed, self.pushed
        with pytest.raises(TimeoutError):
            await self.recv(wait)

    async def closed(self) -> tuple[int, str, list[dict[str, Any]]]:
        """Read to the end: the close code, reason and the frames before it."""
        frames = list(self.pushed)
        self.pushed.clear()
        with pytest.raises(ConnectionClosed) as info:
            while True:
                frames.append(await self.recv(10 * UNIT))
        rcvd = info.value.rcvd
        assert rcvd is not None
        return rcvd.code, rcvd.reason, frames


@contextlib.asynccontextmanager
async def ws_client(
    server: HubServer, proto: str | None = JSON_PROTO, **kw: Any
) -> AsyncIterator[Client]:
    async with connect(
        server.ws_url + "/v1/ws", subprotocols=[proto] if proto else None,  # type: ignore[list-item]
        proxy=None, compression=None, open_timeout=5 * UNIT, **kw,
    ) as ws:
        yield Client(ws)


async def test_default_subprotocol_is_json(hub_server: HubServer) -> None:
    """A client that offers no subprotocol speaks JSON, and none is named."""
    async with ws_client(hub_server, None) as c:
        assert c.ws.subprotocol is None
        assert await c.ok({"op": "ping", "id": 7}) == {"op": "pong", "id": 7}


async def test_client_preference_wins(hub_server: HubServer) -> None:
    """Of several offered subprotocols the client's first known one is chosen."""
    async with connect(
        hub_server.ws_url + "/v1/ws", proxy=None,
        subprotocols=["x.unknown", MSGPACK_PROTO, JSON_PROTO],  # type: ignore[list-item]
    ) as ws:
        assert ws.subprotocol == MSGPACK_PROTO


async def test_unknown_subprotocol_is_refused(hub_server: HubServer) -> None:
    """Offering only unknown subprotocols gets a 400 problem document, no WebSocket."""
    with pytest.raises(InvalidStatus) as info:
        async with ws_client(hub_server, "chat.v2"):
            pass
    response = info.value.response
    assert response.status_code == 400
    problem = json.loads(response.body or b"")
    assert problem["code"] == "invalid-request"
    assert problem["field"] == "Sec-WebSocket-Protocol"


@pytest.mark.smoke
async def test_pub_sub_order_and_cursors(hub_server: HubServer) -> None:
    """A subscriber gets every message in order, each with its publish receipt's cursor."""
    async with ws_client(hub_server) as sub, ws_client(hub_server) as pub:
        ok = await sub.ok({"op": "sub", "id": 1, "topics": ["chat.room1"]})
        assert ok["sub"] == 1 and isinstance(ok["cursor"], str)
        receipts = [
            await pub.ok({"op": "pub", "id": i, "topic": "chat.room1", "data": {"n": i}})
            for i in range(5)
        ]
        assert [r["offset"] for r in receipts] == [1, 2, 3, 4, 5]
        assert all(r["topic"] == "chat.room1" and r.get("duplicate") is None for r in receipts)
        msgs = await sub.messages(5)
        assert [m["data"] for m in msgs] == [{"n": i} for i in range(5)]
        assert [m["cursor"] for m in msgs] == [r["cursor"] for r in receipts]
        assert [m["id"] for m in msgs] == [r["msg_id"] for r in receipts]
        assert set(msgs[0]) == {"op", "topic", "offset", "cursor", "time", "id", "data"}
        await sub.quiet()


async def test_sub_starts_at_the_live_end(hub_server: HubServer) -> None:
    """Without ``after`` a subscription gets only what is published after its ``ok``."""
    async with ws_client(hub_server) as c:
        await c.ok({"op": "pub", "id": 1, "topic": "news.a", "data": "old"})
        await c.ok({"op": "sub", "id": 2, "topics": ["news.a"]})
        await c.ok({"op": "pub", "id": 3, "topic": "news.a", "data": "new"})
        assert [m["data"] for m in await c.messages(1)] == ["new"]
        await c.quiet()


async def test_resume_with_after_gets_later_messages_once(hub_server: HubServer) -> None:
    """Resuming from a message's cursor gets exactly the later messages, once, in order."""
    async with ws_client(hub_server) as c:
        await c.ok({"op": "sub", "id": 1, "topics": ["jobs.x"]})
        for i in range(3):
            await c.ok({"op": "pub", "id": 10 + i, "topic": "jobs.x", "data": i})
        seen = await c.messages(3)
    async with ws_client(hub_server) as p:
        for i in range(3, 6):
            await p.ok({"op": "pub", "id": i, "topic": "jobs.x", "data": i})
    async with ws_client(hub_server) as c:
        ok = await c.ok({"op": "sub", "id": 1, "topics": ["jobs.x"], "after": seen[1]["cursor"]})
        assert ok["cursor"] == seen[1]["cursor"]
        assert [m["data"] for m in await c.messages(4)] == [2, 3, 4, 5]
        await c.quiet()
        start = await c.ok({"op": "sub", "id": 2, "topics": ["jobs.x"], "after": "start"})
        assert start["sub"] == 2
        assert [m["data"] for m in await c.messages(6)] == [0, 1, 2, 3, 4, 5]


async def test_pattern_sub_picks_up_new_topics(hub_server: HubServer) -> None:
    """A pattern subscription receives topics that appear after it, in publish order."""
    async with ws_client(hub_server) as c, ws_client(hub_server) as p:
        await c.ok({"op": "sub", "id": 1, "topics": ["room.*", "alerts.>"]})
        sent = [("room.a", 1), ("other.x", 2), ("room.b", 3), ("alerts.x.y", 4), ("room.a.b", 5)]
        for i, (topic, data) in enumerate(sent):
            await p.ok({"op": "pub", "id": i, "topic": topic, "data": data})
        msgs = await c.messages(3)
        assert [(m["topic"], m["data"]) for m in msgs] == [
            ("room.a", 1), ("room.b", 3), ("alerts.x.y", 4)]
        await c.quiet()
        # The last cursor resumes the pattern subscription after everything seen.
        await p.ok({"op": "pub", "id": 9, "topic": "room.c", "data": 6})
    async with ws_client(hub_server) as c:
        await c.ok({"op": "sub", "id": 1, "topics": ["room.*", "alerts.>"],
                    "after": msgs[-1]["cursor"]})
        assert [m["data"] for m in await c.messages(1)] == [6]


async def test_msgpack_round_trip(hub_server: HubServer) -> None:
    """MessagePack frames carry payload bytes raw; values are stored as JSON."""
    async with ws_client(hub_server, MSGPACK_PROTO) as c, ws_client(hub_server) as j:
        assert c.binary
        await c.ok({"op": "sub", "id": 1, "topics": ["blob.>"]})
        await j.ok({"op": "sub", "id": 1, "topics": ["blob.>"]})
        raw = bytes(range(256))
        ok = await c.ok({"op": "pub", "id": 2, "topic": "blob.a", "data": raw})
        assert ok["offset"] == 1
        await c.ok({"op": "pub", "id": 3, "topic": "blob.a", "data": b"<p>", "content_type":
                    "text/html"})
        await c.ok({"op": "pub", "id": 4, "topic": "blob.a", "data": {"k": [1, "x"]}})
        m1, m2, m3 = await c.messages(3)
        assert m1["data"] == raw and m1["content_type"] == "application/octet-stream"
        assert m2["data"] == b"<p>" and m2["content_type"] == "text/html"
        assert m3["data"] == {"k": [1, "x"]} and "content_type" not in m3
        # The same messages on the JSON door: bytes base64-encoded.
        j1, j2, j3 = await j.messages(3)
        assert base64.b64decode(j1["data"]) == raw
        assert j2["content_type"] == "text/html" and j3["data"] == {"k": [1, "x"]}
        assert [m["cursor"] for m in (m1, m2, m3)] == [m["cursor"] for m in (j1, j2, j3)]


async def test_json_pub_of_bytes_is_base64(hub_server: HubServer) -> None:
    """On JSON, a non-JSON content type takes base64 data, as msg frames carry it."""
    async with ws_client(hub_server) as c, ws_client(hub_server, MSGPACK_PROTO) as m:
        await m.ok({"op": "sub", "id": 1, "topics": ["img.a"]})
        data = base64.b64encode(b"\x89PNG\x00").decode()
        await c.ok({"op": "pub", "id": 1, "topic": "img.a", "data": data,
                    "content_type": "image/png"})
        (msg,) = await m.messages(1)
        assert msg["data"] == b"\x89PNG\x00" and msg["content_type"] == "image/png"


async def test_gap_for_trimmed_history(hub_server: HubServer) -> None:
    """Resuming behind retained history gets a gap frame with the lost range, then the rest."""
    async with ws_client(hub_server) as c:
        first = await c.ok({"op": "pub", "id": 0, "topic": "tiny.t", "data": 1})
        for i in range(2, 11):
            await c.ok({"op": "pub", "id": i, "topic": "tiny.t", "data": i})
        await c.ok({"op": "sub", "id": 1, "topics": ["tiny.t"], "after": first["cursor"]})
        gap = await c.next()
        assert gap == {"op": "gap", "sub": 1, "topic": "tiny.t", "from": 2, "to": 5,
                       "reason": "trimmed"}
        assert [m["offset"] for m in await c.messages(5)] == [6, 7, 8, 9, 10]


async def test_unsub_stops_delivery(hub_server: HubServer) -> None:
    """After the unsub reply no message of that subscription arrives; others go on."""
    async with ws_client(hub_server) as c:
        a = await c.ok({"op": "sub", "id": 1, "topics": ["u.a"]})
        await c.ok({"op": "sub", "id": 2, "topics": ["u.b", "u.c"]})
        await c.ok({"op": "sub", "id": 3, "topics": ["u.d"]})
        ok = await c.ok({"op": "unsub", "id": 4, "sub": a["sub"]})
        assert ok == {"op": "ok", "id": 4, "subs": {str(a["sub"]): a["cursor"]}}
        ok = await c.ok({"op": "unsub", "id": 5, "topics": ["u.c", "u.b", "u.x"]})
        assert list(ok["subs"]) == ["2"]
        for i, topic in enumerate(["u.a", "u.b", "u.c", "u.d"]):
            await c.ok({"op": "pub", "id": 10 + i, "topic": topic, "data": topic})
        assert [m["topic"] for m in await c.messages(1)] == ["u.d"]
        await c.quiet()
        err = await c.op({"op": "unsub", "id": 6, "sub": a["sub"]})
        assert err["code"] == "not-found" and err["field"] == "sub"


async def test_several_subscriptions_and_their_limit(hub_server: HubServer) -> None:
    """A connection holds up to MAX_SUBSCRIPTIONS subscriptions, each with its own id."""
    async with ws_client(hub_server) as c:
        ids = [(await c.ok({"op": "sub", "id": i, "topics": [f"many.t{i}"]}))["sub"]
               for i in range(MAX_SUBSCRIPTIONS)]
        assert len(set(ids)) == MAX_SUBSCRIPTIONS
        err = await c.op({"op": "sub", "id": "over", "topics": ["many.x"]})
        assert err["op"] == "err" and err["code"] == "invalid-request"
        await c.ok({"op": "pub", "id": "p", "topic": "many.t7", "data": 7})
        assert [m["data"] for m in await c.messages(1)] == [7]


async def test_idempotent_pub(hub_server: HubServer) -> None:
    """A pub retried with the same key stores nothing and says duplicate."""
    async with ws_client(hub_server) as c:
        one = await c.ok({"op": "pub", "id": 1, "topic": "k.t", "data": 1, "key": "abc"})
        two = await c.ok({"op": "pub", "id": 2, "topic": "k.t", "data": 2, "key": "abc"})
        assert two["duplicate"] is True and two["offset"] == one["offset"] == 1


async def test_ping(hub_server: HubServer) -> None:
    """ping is answered by a pong with the same id, on both subprotocols."""
    for proto in (JSON_PROTO, MSGPACK_PROTO):
        async with ws_client(hub_server, proto) as c:
            assert await c.ok({"op": "ping", "id": "a1"}) == {"op": "pong", "id": "a1"}


BAD_OPS = [
    ({"op": "pub", "topic": "bad topic", "data": 1}, "invalid-topic", "topic"),
    ({"op": "pub", "topic": "chat.*", "data": 1}, "invalid-topic", "topic"),
    ({"op": "pub", "topic": "a.b"}, "invalid-request", "data"),
    ({"op": "pub", "topic": 5, "data": 1}, "invalid-request", "topic"),
    ({"op": "pub", "topic": "a.b", "data": 1, "key": " "}, "invalid-request", "key"),
    ({"op": "pub", "topic": "a.b", "data": 1, "content_type": "nonsense"},
     "invalid-request", "content_type"),
    ({"op": "pub", "topic": "a.b", "data": 1, "content_type": "text/plain"},
     "invalid-request", "data"),
    ({"op": "pub", "topic": "a.b", "data": "%%%", "content_type": "text/plain"},
     "invalid-request", "data"),
    ({"op": "pub", "topic": "small.x", "data": "x" * 2000}, "payload-too-large", "data"),
    ({"op": "sub", "topics": ["a..b"]}, "invalid-topic", "topics[0]"),
    ({"op": "sub", "topics": ["ok.x", "a.>.b"]}, "invalid-topic", "topics[1]"),
    ({"op": "sub", "topics": "a.b"}, "invalid-request", "topics"),
    ({"op": "sub", "topics": [1]}, "invalid-request", "topics[0]"),
    ({"op": "sub", "topics": []}, "invalid-request", "topics"),
    ({"op": "sub"}, "invalid-request", "topics"),
    ({"op": "sub", "topics": ["a.b"], "after": "nope"}, "invalid-cursor", "after"),
    ({"op": "sub", "topics": ["a.b"], "group": "no such name"}, "invalid-request", "group"),
    ({"op": "unsub"}, "invalid-request", "sub"),
    ({"op": "unsub", "sub": 99}, "not-found", "sub"),
    ({"op": "unsub", "topics": ["no.such"]}, "not-found", "topics"),
    ({"op": "frobnicate"}, "invalid-op", "op"),
    ({"op": "ack", "ids": []}, "invalid-request", "ids"),
    ({"op": 3}, "invalid-op", "op"),
    ({"id_only": True}, "invalid-op", "op"),
]


@pytest.mark.parametrize(("frame", "code", "field"), BAD_OPS)
async def test_bad_ops_get_err_frames(
    hub_server: HubServer, frame: dict[str, Any], code: str, field: str
) -> None:
    """An op with an id that cannot be carried out is answered with err; the connection lives."""
    async with ws_client(hub_server) as c:
        reply = await c.op({**frame, "id": "x1"})
        assert reply["op"] == "err" and reply["id"] == "x1"
        assert (reply["code"], reply.get("field")) == (code, field), reply
        assert isinstance(reply["message"], str) and reply["message"]
        await c.ok({"op": "ping", "id": 2})


MALFORMED_JSON: list[tuple[str | bytes, int]] = [
    ("not json", 1007),
    ('{"op": "ping", "id": 1', 1007),
    ("[1, 2]", 1008),
    ('"ping"', 1008),
    ('{"op": "ping"}', 1008),
    ('{"op": "ping", "id": [1]}', 1008),
    ('{"op": "ping", "id": 1.5}', 1008),
    ('{"op": "ping", "id": 99999999999999999999}', 1008),
    ('{"op": "ping", "id": "' + "x" * 65 + '"}', 1008),
    ('{"op": "nope"}', 1008),
    (b'{"op": "ping", "id": 1}', 1003),
]


@pytest.mark.parametrize(("frame", "code"), MALFORMED_JSON)
async def test_malformed_json_frames_close(
    hub_server: HubServer, frame: str | bytes, code: int
) -> None:
    """A frame that cannot be answered closes the connection with a code and a reason."""
    async with ws_client(hub_server) as c:
        await c.ws.send(frame)
        got, reason, frames = await c.closed()
        assert got == code and reason
        assert frames == [{"op": "close", "code": code, "reason": reason, "subs": {}}]


@pytest.mark.parametrize(("frame", "code"), [
    (b"\xc1", 1007),
    (msgspec.msgpack.encode([1]), 1008),
    (msgspec.msgpack.encode({"op": "ping"}), 1008),
    ('{"op": "ping", "id": 1}', 1003),
])
async def test_malformed_msgpack_frames_close(
    hub_server: HubServer, frame: str | bytes, code: int
) -> None:
    """On MessagePack, garbage closes with 1007 and text frames with 1003."""
    async with ws_client(hub_server, MSGPACK_PROTO) as c:
        await c.ws.send(frame)
        got, reason, _ = await c.closed()
        assert got == code and reason


async def test_oversize_frame_closes_1009(hub_server: HubServer, config: Config) -> None:
    """A frame over the server's size bound closes the connection with 1009."""
    async with ws_client(hub_server) as c:
        big = {"op": "pub", "id": 1, "topic": "a.b", "data": "x" * (config.max_message_size
                                                                    + 128 * 1024)}
        await c.send(big)
        got, _, _ = await c.closed()
        assert got == 1009
    async with ws_client(hub_server) as c:
        await c.ok({"op": "ping", "id": 1})


async def test_unsolicited_close_reason_carries_the_cursor(hub_server: HubServer) -> None:
    """Closing for a bad frame first sends every subscription's cursor in a close frame."""
    async with ws_client(hub_server) as c:
        s1 = await c.ok({"op": "sub", "id": 1, "topics": ["c.a"]})
        s2 = await c.ok({"op": "sub", "id": 2, "topics": ["c.b"]})
        await c.ws.send("}{")
        code, _, frames = await c.closed()
        assert code == 1007
        assert frames[-1]["subs"] == {"1": s1["cursor"], "2": s2["cursor"]}


# -- hostile input ---------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=12,
)
_ops = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["sub", "unsub", "pub", "ping", "ack", "zzz"]) | _json_values,
        "id": st.integers() | st.text(max_size=70) | _json_values,
    },
    optional={
        "topics": st.lists(st.sampled_from(["h.a", "h.*", ">", "h..", ""]) | st.text(max_size=10),
                           max_size=3) | _json_values,
        "topic": st.sampled_from(["h.a", "h.b", "h.*"]) | st.text(max_size=10),
        "data": _json_values,
        "after": st.sampled_from(["start", "end", "abcdefghij.1.1"]) | _json_values,
        "sub": st.integers(min_value=-1, max_value=3) | _json_values,
        "key": st.text(max_size=10),
        "content_type": st.sampled_from(["text/plain", "application/json", "x"]),
    },
)
_frames = st.one_of(
    _ops.map(json.dumps),
    _ops.map(lambda op: {k: v for k, v in op.items() if k != "id"}).map(json.dumps),
    _json_values.map(json.dumps),
    st.text(max_size=50),
    st.binary(max_size=50),
)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frames=st.lists(_frames, min_size=1, max_size=6))
async def test_hostile_frames_never_hurt_the_server(
    hub_server: HubServer, caplog: pytest.LogCaptureFixture, frames: list[str | bytes]
) -> None:
    """Random ops, JSON values and garbage get err frames or a close, never a crash."""
    caplog.set_level(logging.ERROR)
    # uvicorn's loggers do not propagate to the root logger caplog listens on.
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        await _hostile_session(hub_server, frames)
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


async def _hostile_session(hub_server: HubServer, frames: list[str | bytes]) -> None:
    async with ws_client(hub_server) as c:
        with contextlib.suppress(ConnectionClosed):
            for frame in frames:
                await c.ws.send(frame)
            await c.send({"op": "ping", "id": "end-of-hostile-frames"})
            while (await c.recv())["op"] != "pong":
                pass
        if c.ws.close_code is not None:
            assert c.ws.close_code in (1003, 1007, 1008)
    async with ws_client(hub_server) as c:
        await c.ok({"op": "sub", "id": 1, "topics": ["h.after"]})
        await c.ok({"op": "pub", "id": 2, "topic": "h.after", "data": 1})
        assert [m["data"] for m in await c.messages(1)] == [1]


# -- slow consumers and draining ------------------------------------------------------


async def test_slow_consumer_is_cut_off_with_a_cursor(hub_server: HubServer) -> None:
    """A subscriber that stops reading gets 4008 and a resume cursor; a fast one gets all.

    The slow client's socket has a tiny receive buffer and its library queue
    holds one message, so the server's writes to it back up quickly. Messages
    are published in rounds smaller than the buffer (64), paced by the fast
    subscriber, until the hub cuts the slow one off its fan-out.
    """
    hub = hub_server.hub
    topic = "slow.t"
    port = int(hub_server.ws_url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    payload = "x" * 8192
    async with asyncio.timeout(60 * UNIT):
        async with ws_client(hub_server, sock=sock, max_queue=1) as slow, \
                ws_client(hub_server) as fast:
            await slow.ok({"op": "sub", "id": 1, "topics": [topic]})
            await fast.ok({"op": "sub", "id": 1, "topics": [topic]})
            got: list[dict[str, Any]] = []
            published = 0
            while hub.fanout.count(topic) == 2:
                assert published < 20_000, "the slow subscriber was never cut off"
                items = [PublishItem(topic, json.dumps(payload).encode()) for _ in range(32)]
                await hub.publish_batch(items)
                published += len(items)
                while len(got) < published:
                    got.append(await fast.next(10 * UNIT))
            assert [m["offset"] for m in got] == list(range(1, published + 1))
            # The slow one reads again: what was sent, then the close with its cursor.
            code, reason, frames = await slow.closed()
            assert code == 4008
            prefix = "slow consumer; resume from "
            assert reason.startswith(prefix) and len(reason.encode()) <= 123
            cursor = reason[len(prefix):]
            msgs = [f for f in frames if f["op"] == "msg"]
            assert frames[-1] == {"op": "close", "code": 4008, "reason": reason,
                                  "subs": {"1": cursor}}
            assert msgs and len(msgs) < published
            assert [m["offset"] for m in msgs] == list(range(1, len(msgs) + 1))
            assert msgs[-1]["cursor"] == cursor
        # Resuming from the cursor gets the rest, exactly.
        async with ws_client(hub_server) as again:
            await again.ok({"op": "sub", "id": 1, "topics": [topic], "after": cursor})
            rest = await again.messages(published - len(msgs))
            assert rest[0]["offset"] == len(msgs) + 1 and rest[-1]["offset"] == published


async def test_drain_closes_1012_with_the_cursor(hub_server: HubServer) -> None:
    """A draining hub closes subscribers with 1012 and their resume cursors."""
    async with ws_client(hub_server) as one, ws_client(hub_server) as two:
        await one.ok({"op": "sub", "id": 1, "topics": ["d.a"]})
        await two.ok({"op": "sub", "id": 1, "topics": ["d.a"]})
        await two.ok({"op": "sub", "id": 2, "topics": ["d.>"]})
        pub = await one.ok({"op": "pub", "id": 2, "topic": "d.a", "data": 1})
        await one.messages(1)
        await two.messages(2)
        await hub_server.hub.drain()
        code, reason, frames = await one.closed()
        assert (code, reason) == (1012, f"service restart; resume from {pub['cursor']}")
        code, reason, frames = await two.closed()
        assert code == 1012 and "close frame" in reason
        assert frames[-1]["subs"] == {"1": pub["cursor"], "2": pub["cursor"]}
    with pytest.raises(InvalidStatus) as info:
        async with ws_client(hub_server):
            pass
    assert info.value.response.status_code == 503


async def test_drain_closes_connections_without_subscriptions(hub_server: HubServer) -> None:
    """A connection that only publishes is closed with 1012 too, not left open."""
    async with ws_client(hub_server) as idle:
        await idle.ok({"op": "ping", "id": 1})
        await hub_server.hub.drain()
        code, reason, _ = await idle.closed()
        assert code == 1012 and reason.startswith("service restart")
