"""Deeply nested JSON is refused with 400 (WebSocket close 1007) on every door.

Before the limit, 100,000-deep JSON made msgspec raise ``RecursionError``: a
500 and a logged traceback, before authorization on ``/v1/publish`` and on a
WebSocket with no token. Now every door measures a client's JSON before
decoding it (:mod:`hubbub.protocol.depth`) against ``[limits] json_depth``.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.config import Config, ConfigError
from hubbub.core.auth import mint
from hubbub.protocol import wire
from hubbub.protocol.depth import check_depth, json_depth, too_deep
from hubbub.protocol.errors import TooDeep
from tests.conftest import UNIT, HubServer, start_server
from tests.transports.test_ws import JSON_PROTO, MSGPACK_PROTO, ws_client

DEEP = 100_000
SECRET = "depth-secret-for-tests-0123456789abcdef"


def nested(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"limits": {"json_depth": 8}})


# -- the measure (pure) ---------------------------------------------------------------


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:\u00e9', max_size=8),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(alphabet='[]{}"\\ab', max_size=4), inner, max_size=3),
    max_leaves=20,
)


@given(json_values)
def test_depth_is_the_parsers(value: Any) -> None:
    """The scan finds the depth a parser would, brackets inside strings and escaped
    quotes included."""
    text = json.dumps(value, ensure_ascii=False)
    assert json_depth(text) == depth_of(value)
    assert json_depth(text.encode()) == depth_of(value)


def test_depth_of_examples() -> None:
    """Scalars are 0 deep; strings hide brackets; the deepest point counts, not the last."""
    assert json_depth(b"1") == 0
    assert json_depth(b'"[[[["') == 0
    assert json_depth(b'["\\"[", {"a": [1]}]') == 3
    assert json_depth(b"[[[]],[]]") == 3
    assert json_depth(nested(DEEP)) == DEEP


def test_too_deep_is_strict_and_checks_before_decoding() -> None:
    """``limit`` levels pass, one more is refused with the limit named."""
    assert not too_deep(nested(8), 8)
    assert too_deep(nested(9), 8)
    assert not too_deep(b'"' + b"[" * 100 + b'"', 8)
    with pytest.raises(TooDeep) as info:
        check_depth(nested(DEEP), 64, field="data")
    assert info.value.field == "data"
    assert info.value.extra == {"limit": 64}


def test_codec_refuses_a_deep_frame_without_an_op_id() -> None:
    """A deep frame is refused undecoded (close 1007), JSON and MessagePack alike."""
    frame = b'{"op":"pub","id":1,"topic":"a","data":' + nested(DEEP) + b"}"
    got = wire.JSON_CODEC.decode(frame.decode())
    assert isinstance(got, wire.Refusal) and isinstance(got.error, TooDeep)
    assert got.op_id is None
    packed = b"\x84\xa2op\xa3pub\xa2id\x01\xa5topic\xa1a\xa4data" + b"\x91" * DEEP + b"\xc0"
    got = wire.MSGPACK_CODEC.decode(packed)
    assert isinstance(got, wire.Refusal) and isinstance(got.error, TooDeep)


def test_config_bounds_the_limit() -> None:
    assert Config().limits.json_depth == 64
    for bad in (0, 513, True, "8"):
        with pytest.raises(ConfigError, match="limits.json_depth"):
            Config.from_dict({"limits": {"json_depth": bad}})


# -- over real sockets ---------------------------------------------------------------


def assert_too_deep(r: Any) -> None:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "too-deep"


async def test_http_doors_refuse_deep_json(hub_server: HubServer) -> None:
    """Publish, batch, request, job submit and report, group ack and SSE ``info``
    answer 400 ``too-deep``; the limit's depth itself is accepted; nothing is stored."""
    ok_data = nested(8)
    async with hub_server.client() as c:
        h = {"content-type": "application/json"}
        r = await c.post("/v1/topics/deep.a", content=ok_data, headers=h)
        assert r.status_code == 201, r.text
        for depth in (9, DEEP):
            assert_too_deep(await c.post("/v1/topics/deep.a", content=nested(depth), headers=h))
        batch = b'[{"topic":"deep.a","data":' + nested(DEEP) + b"}]"
        assert_too_deep(await c.post("/v1/publish", content=batch))
        batch = b'[{"topic":"deep.a","data":' + nested(9) + b"}]"
        assert_too_deep(await c.post("/v1/publish", content=batch))
        assert_too_deep(await c.post("/v1/requests/svc.x?timeout=1", content=nested(DEEP),
                                     headers=h))
        assert_too_deep(await c.post("/v1/jobs/q", content=nested(DEEP), headers=h))
        body = b'{"lease":"x","result":' + nested(DEEP) + b"}"
        assert_too_deep(await c.post("/v1/jobs/" + "0" * 32 + "/complete", content=body))
        body = b'{"ids":' + nested(50_000) + b"}"
        assert_too_deep(await c.post("/v1/groups/g/ack", content=body))
        info = "[" * 1000 + "]" * 1000
        assert_too_deep(await c.get("/v1/topics/deep.a/events", params={"info": info}))
        r = await c.get("/v1/topics/deep.a/messages", params={"after": "start"})
        assert [m["data"] for m in r.json()["messages"]] == [json.loads(ok_data)]
        assert (await c.get("/healthz")).status_code == 200


@pytest.mark.parametrize("proto", [JSON_PROTO, MSGPACK_PROTO])
async def test_websocket_closes_1007_on_a_deep_frame(hub_server: HubServer, proto: str) -> None:
    """A frame nested past the limit closes the connection with 1007."""
    async with ws_client(hub_server, proto, max_size=None) as c:
        if proto == JSON_PROTO:
            await c.ws.send('{"op":"pub","id":1,"topic":"a","data":' + "[" * DEEP + "]" * DEEP
                            + "}")
        else:
            await c.ws.send(b"\x84\xa2op\xa3pub\xa2id\x01\xa5topic\xa1a\xa4data"
                            + b"\x91" * DEEP + b"\xc0")
        code, reason, _ = await c.closed()
    assert code == 1007
    assert "deep" in reason


async def test_websocket_err_frame_on_deep_data(hub_server: HubServer) -> None:
    """A MessagePack payload past the limit (but decodable) is refused by an ``err``
    frame naming ``data``; the connection goes on."""
    async with ws_client(hub_server, MSGPACK_PROTO) as c:
        value: Any = 1
        for _ in range(9):
            value = [value]
        reply = await c.op({"op": "pub", "id": 1, "topic": "deep.b", "data": value})
        assert reply["op"] == "err" and reply["code"] == "too-deep", reply
        assert reply["field"] == "data"
        assert (await c.op({"op": "ping", "id": 2}))["op"] == "pong"


async def test_before_authorization(tmp_path: Any) -> None:
    """With authentication on, a deep batch from a principal allowed nothing, and a
    deep first frame on a WebSocket with no token, get 400 and 1007, not 500/1011."""
    config = Config.from_dict({"auth": {"secret": SECRET}})
    srv = await start_server("memory://", config)
    try:
        token = mint(SECRET.encode(), "nobody")
        async with srv.client() as c:
            batch = b'[{"topic":"a","data":' + nested(DEEP) + b"}]"
            r = await c.post("/v1/publish", content=batch,
                             headers={"authorization": f"Bearer {token}"})
            assert_too_deep(r)
            r = await c.post("/v1/publish", content=batch)
            assert r.status_code == 401
        async with ws_client(srv, JSON_PROTO, max_size=None) as ws:
            await ws.ws.send(msgspec.json.encode({"op": "sub", "id": 1, "topics": ["a"]})[:-1]
                             .decode() + ',"x":' + "[" * DEEP + "]" * DEEP + "}")
            code, _, _ = await ws.closed()
        assert code == 1007
    finally:
        await srv.stop()


pytestmark = pytest.mark.timeout(60 * UNIT)
