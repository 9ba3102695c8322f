"""Consumer groups over WebSockets: ``sub`` with a ``group``, ``ack``, ``nack``, ``extend``.

Real uvicorn server, real ``websockets`` clients, every engine; every wait
bounded in ``UNIT``s.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.config import Config
from hubbub.protocol import wire
from hubbub.protocol.message import Message
from tests.conftest import UNIT, HubServer
from tests.transports.test_ws import JSON_PROTO, MSGPACK_PROTO, Client, ws_client

LEASE_KEYS = ("op", "sub", "lease", "attempt", "deadline")


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"defaults": {"max_deliver": 3}})


async def publish(client: httpx.AsyncClient, topic: str, *values: Any) -> None:
    r = await client.post("/v1/publish", json=[{"topic": topic, "data": v} for v in values])
    assert r.status_code == 201, r.text


async def join(c: Client, group: str, topics: list[str], op_id: int = 1, **kw: Any) -> int:
    reply = await c.ok({"op": "sub", "id": op_id, "topics": topics, "group": group, **kw})
    assert reply["group"] == group
    sub: int = reply["sub"]
    return sub


async def settle(c: Client, op: str, ids: list[str], op_id: Any = "s", **kw: Any) -> dict[str, Any]:
    return await c.op({"op": op, "id": op_id, "ids": ids, **kw})


@pytest.mark.sockets
async def test_group_sub_delivers_leased_messages(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Each msg frame is the message object with sub, lease, attempt and deadline; acks settle."""
    await publish(client, "w.a", "x", "y")
    async with ws_client(hub_server) as c:
        sub = await join(c, "wg", ["w.*"], start="start")
        frames = await c.messages(2)
        page = (await client.get("/v1/messages", params={"topic": "w.*"})).json()["messages"]
        assert [{k: v for k, v in f.items() if k not in LEASE_KEYS} for f in frames] == page
        assert all(f["sub"] == sub and f["attempt"] == 1 for f in frames)
        assert list(frames[0])[:5] == list(LEASE_KEYS)
        reply = await settle(c, "ack", [f["lease"] for f in frames])
        assert reply == {"op": "ok", "id": "s",
                         "results": {f["lease"]: "ok" for f in frames}}
    assert (await client.get("/v1/groups/wg")).json()["pending"] == 0


@pytest.mark.sockets
async def test_window_bounds_the_unsettled_deliveries(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Never more than window deliveries are unsettled; each settle lets exactly one more in."""
    await publish(client, "win.t", *range(10))
    async with ws_client(hub_server) as c:
        await join(c, "win", ["win.t"], window=3, start="start")
        held = [f["lease"] for f in await c.messages(3)]
        await c.quiet()
        got = 3
        while held:
            lease = held.pop(0)
            await settle(c, "ack", [lease])
            if got < 10:
                held.append((await c.messages(1))[0]["lease"])
                got += 1
            await c.quiet(0.05 * UNIT)
            assert len(held) <= 3
    assert (await client.get("/v1/groups/win")).json()["pending"] == 0


@pytest.mark.sockets
async def test_an_expired_delivery_holds_its_slot_until_settled(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """A delivery whose lease ran out still fills the window; a late ack works while nobody
    else took the message, else answers expired; either way it frees the slot."""
    await publish(client, "ex.t", "a", "b", "c")
    async with ws_client(hub_server) as c:
        await join(c, "ex", ["ex.t"], window=1, lease=0.3, start="start")
        [a] = await c.messages(1)
        await asyncio.sleep(0.5)
        await c.quiet()
        assert (await settle(c, "ack", [a["lease"]]))["results"] == {a["lease"]: "ok"}
        [b] = await c.messages(1)
        assert b["data"] == "b"
        await asyncio.sleep(0.5)
        r = await client.post("/v1/groups/ex/pull", params={"lease": 60})
        assert [x["data"] for x in r.json()["messages"]] == ["b"]  # another worker took it
        reply = await settle(c, "ack", [b["lease"]])
        assert (reply["op"], reply["results"]) == ("err", {b["lease"]: "expired"})
        [f] = await c.messages(1)
        assert f["data"] == "c"


@pytest.mark.sockets
async def test_workers_share_a_group(hub_server: HubServer, client: httpx.AsyncClient) -> None:
    """Two connections on one group split the messages: each message goes to one of them."""
    async with ws_client(hub_server) as a, ws_client(hub_server) as b:
        await join(a, "share", ["sh.*"], window=4)
        await join(b, "share", ["sh.*"], window=4)
        await publish(client, "sh.x", *range(40))
        seen: list[int] = []

        async def work(c: Client) -> None:
            while len(seen) < 40:
                try:
                    frame = await c.next(0.5 * UNIT)
                except TimeoutError:
                    continue
                assert frame["op"] == "msg", frame
                seen.append(frame["data"])
                reply = await settle(c, "ack", [frame["lease"]], op_id=frame["lease"])
                assert reply["results"] == {frame["lease"]: "ok"}

        async with asyncio.timeout(20 * UNIT):
            await asyncio.gather(work(a), work(b))
    assert sorted(seen) == list(range(40))


@pytest.mark.sockets
async def test_closing_gives_back_unsettled_deliveries(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """A closed connection's unacked deliveries go to other workers at once, not after the lease."""
    await publish(client, "cl.t", *range(3))
    async with ws_client(hub_server) as a:
        await join(a, "cl", ["cl.t"], window=3, lease=600, start="start")
        first = await a.messages(3)
        await settle(a, "ack", [first[0]["lease"]])
    async with ws_client(hub_server) as b:
        await join(b, "cl", ["cl.t"])
        again = await b.messages(2)
        assert [(f["data"], f["attempt"]) for f in again] == [(1, 2), (2, 2)]
        await b.quiet()


@pytest.mark.sockets
async def test_unsub_stops_deliveries_but_settles_still_work(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """After unsub no more msg frames come; what was delivered can still be acked."""
    await publish(client, "un.t", 1, 2)
    async with ws_client(hub_server) as c:
        sub = await join(c, "un", ["un.t"], start="start")
        frames = await c.messages(2)
        assert (await c.ok({"op": "unsub", "id": 2, "sub": sub}))["subs"] == {str(sub): None}
        await publish(client, "un.t", 3)
        await c.quiet()
        reply = await settle(c, "ack", [f["lease"] for f in frames])
        assert set(reply["results"].values()) == {"ok"}
        sub2 = await join(c, "un", ["un.t"], op_id=3)
        [f] = await c.messages(1)
        assert (f["data"], f["sub"]) == (3, sub2)
        assert (await c.ok({"op": "unsub", "id": 4, "topics": ["un.t"]}))["subs"] == {
            str(sub2): None}


@pytest.mark.sockets
async def test_nack_and_extend_ops(hub_server: HubServer, client: httpx.AsyncClient) -> None:
    """nack returns a message after its delay (attempt 2); extend keeps a lease alive."""
    await publish(client, "ne.t", "a", "b")
    async with ws_client(hub_server) as c:
        await join(c, "ne", ["ne.t"], window=2, lease=0.5, start="start")
        a, b = await c.messages(2)
        assert (await settle(c, "extend", [b["lease"]], lease=30))["results"] == {
            b["lease"]: "ok"}
        assert (await settle(c, "nack", [a["lease"]], delay=0.3))["results"] == {
            a["lease"]: "ok"}
        [again] = await c.messages(1)
        assert (again["data"], again["attempt"]) == ("a", 2)
        await asyncio.sleep(0.7)
        await c.quiet()  # b's lease was extended: it does not come back
        assert set((await settle(c, "ack", [b["lease"], again["lease"]]))["results"].values()) \
            == {"ok"}


@pytest.mark.sockets
async def test_poison_message_is_dead_lettered(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Nacked max_deliver times, a message lands in dlq.<group> with its last error."""
    await publish(client, "po.t", {"bad": True})
    async with ws_client(hub_server) as c:
        await join(c, "po", ["po.t"], window=1, start="start")
        for attempt in (1, 2, 3):
            [f] = await c.messages(1)
            assert f["attempt"] == attempt
            await settle(c, "nack", [f["lease"]], error=f"failed {attempt}")
        await c.quiet()
    [dead] = (await client.get("/v1/topics/dlq.po/messages")).json()["messages"]
    assert dead["data"]["attempts"] == 3 and dead["data"]["error"] == "failed 3"
    assert dead["data"]["data"] == {"bad": True}


@pytest.mark.sockets
async def test_msgpack_group_frames(hub_server: HubServer, client: httpx.AsyncClient) -> None:
    """On MessagePack the frame is the same map, bytes raw; acks work the same."""
    r = await client.post("/v1/topics/mp.t", content=b"\x00\xff",
                          headers={"content-type": "image/png"})
    assert r.status_code == 201
    async with ws_client(hub_server, MSGPACK_PROTO) as c:
        sub = await join(c, "mp", ["mp.t"], start="start")
        [f] = await c.messages(1)
        assert f["sub"] == sub and f["attempt"] == 1 and f["data"] == b"\x00\xff"
        assert f["content_type"] == "image/png" and f["topic"] == "mp.t"
        assert (await settle(c, "ack", [f["lease"]]))["results"] == {f["lease"]: "ok"}


@pytest.mark.sockets
async def test_settling_ids_not_delivered_here(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Ids this connection did not deliver are unknown: err conflict, nothing changes."""
    await publish(client, "nd.t", 1)
    r = await client.post("/v1/groups/nd/pull", params={"topic": "nd.t", "start": "start"})
    [item] = r.json()["messages"]
    async with ws_client(hub_server) as c:
        await join(c, "nd", ["nd.t"])
        for op in ("ack", "nack", "extend"):
            reply = await settle(c, op, [item["lease"], "5.0123456789ab"])
            assert reply["op"] == "err" and reply["code"] == "conflict", reply
            assert reply["results"] == {item["lease"]: "unknown", "5.0123456789ab": "unknown"}
        await c.quiet()
    assert (await client.get("/v1/groups/nd")).json()["pending"] == 1
    r = await client.post("/v1/groups/nd/ack", json={"ids": [item["lease"]]})
    assert r.status_code == 200


BAD_SETTLES = [
    ({"op": "ack"}, "invalid-request", "ids"),
    ({"op": "ack", "ids": []}, "invalid-request", "ids"),
    ({"op": "ack", "ids": "1.0123456789ab"}, "invalid-request", "ids"),
    ({"op": "ack", "ids": [7]}, "invalid-request", "ids[0]"),
    ({"op": "ack", "ids": ["1.0123456789ab", "x"]}, "invalid-request", "ids[1]"),
    ({"op": "nack", "ids": ["LEASE"], "delay": -1}, "invalid-request", "delay"),
    ({"op": "nack", "ids": ["LEASE"], "delay": 10**9}, "invalid-request", "delay"),
    ({"op": "nack", "ids": ["LEASE"], "delay": "1"}, "invalid-request", "delay"),
    ({"op": "nack", "ids": ["LEASE"], "error": "x" * 1001}, "invalid-request", "error"),
    ({"op": "extend", "ids": ["LEASE"], "lease": 0}, "invalid-request", "lease"),
    ({"op": "extend", "ids": ["LEASE"], "lease": 1e9}, "invalid-request", "lease"),
]


@pytest.mark.parametrize(("frame", "code", "field"), BAD_SETTLES)
@pytest.mark.sockets
async def test_bad_settle_ops(
    hub_server: HubServer, client: httpx.AsyncClient, frame: dict[str, Any], code: str,
    field: str,
) -> None:
    """A malformed ack, nack or extend gets err naming the field; the lease is untouched."""
    await publish(client, "bo.t", 1)
    async with ws_client(hub_server) as c:
        await join(c, "bo", ["bo.t"], start="start", lease=600)
        [f] = await c.messages(1)
        frame = {**frame, "id": 9}
        if "ids" in frame and isinstance(frame["ids"], list):
            frame["ids"] = [f["lease"] if x == "LEASE" else x for x in frame["ids"]]
        reply = await c.op(frame)
        assert (reply["op"], reply["code"], reply.get("field")) == ("err", code, field), reply
        assert (await settle(c, "ack", [f["lease"]]))["results"] == {f["lease"]: "ok"}


BAD_SUBS = [
    ({"group": "a b"}, "invalid-request", "group"),
    ({"group": "x" * 65}, "invalid-request", "group"),
    ({"group": 5}, "invalid-request", "group"),
    ({"group": "g", "window": 0}, "invalid-request", "window"),
    ({"group": "g", "window": 1001}, "invalid-request", "window"),
    ({"group": "g", "window": -3}, "invalid-request", "window"),
    ({"group": "g", "window": "10"}, "invalid-request", "window"),
    ({"group": "g", "lease": 0}, "invalid-request", "lease"),
    ({"group": "g", "lease": -1}, "invalid-request", "lease"),
    ({"group": "g", "lease": 1e12}, "invalid-request", "lease"),
    ({"group": "g", "start": "middle"}, "invalid-request", "start"),
    ({"group": "g", "after": "start"}, "invalid-request", "after"),
    ({"group": "g", "topics": ["a..b"]}, "invalid-topic", "topics[0]"),
    ({"group": "g", "topics": []}, "invalid-request", "topics"),
    ({"group": "g", "topics": [f"t.{i}" for i in range(101)]}, "invalid-request", "topics"),
    ({"window": 5}, "invalid-request", "window"),
    ({"lease": 5}, "invalid-request", "lease"),
    ({"start": "start"}, "invalid-request", "start"),
]


@pytest.mark.parametrize(("extra", "code", "field"), BAD_SUBS)
@pytest.mark.sockets
async def test_bad_group_subs(
    hub_server: HubServer, client: httpx.AsyncClient, extra: dict[str, Any], code: str,
    field: str,
) -> None:
    """A bad group sub gets err naming the field; no group is made; the connection lives."""
    async with ws_client(hub_server) as c:
        reply = await c.op({"op": "sub", "id": 1, "topics": ["bs.t"], **extra})
        assert (reply["op"], reply["code"], reply.get("field")) == ("err", code, field), reply
        assert await c.ok({"op": "ping", "id": 2})
    assert (await client.get("/v1/groups/g")).status_code == 404


@pytest.mark.sockets
async def test_group_of_other_topics_is_refused(
    hub_server: HubServer, client: httpx.AsyncClient
) -> None:
    """Joining a group with topics other than its own gets err conflict (field topics)."""
    async with ws_client(hub_server, JSON_PROTO) as c:
        await join(c, "ot", ["ot.a"])
        reply = await c.op({"op": "sub", "id": 2, "topics": ["ot.b"], "group": "ot"})
        assert (reply["op"], reply["code"], reply["field"]) == ("err", "conflict", "topics")
    assert (await client.get("/v1/groups/ot")).json()["topics"] == ["ot.a"]


# -- the frames, pure ---------------------------------------------------------------------

_payloads = st.one_of(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1)
        | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                    max_size=3),
        max_leaves=8,
    ).map(lambda v: (msgspec.json.encode(v), "application/json")),
    st.tuples(st.binary(max_size=20), st.sampled_from(["image/png", "text/plain; q=1"])),
)


@given(payload=_payloads, lease=st.from_regex(r"[1-9][0-9]{0,18}\.[0-9a-f]{12}", fullmatch=True),
       attempt=st.integers(1, 1000), deadline=st.integers(0, 2**53), sub=st.integers(1, 2**31),
       topic=st.from_regex(r"[a-z]{1,8}(\.[a-z]{1,8}){0,2}", fullmatch=True))
def test_delivery_frames_are_the_message_plus_the_lease(
    payload: tuple[bytes, str], lease: str, attempt: int, deadline: int, sub: int, topic: str
) -> None:
    """Spliced frames decode to the message object with op, sub and the lease keys in front."""
    data, ctype = payload
    m = Message(topic, "abcdefghij", 3, 77, 1_700_000_000_000, "0f3c9a7d2b1e4c58", data, ctype)
    head = {"op": "msg", "sub": sub, "lease": lease, "attempt": attempt, "deadline": deadline}
    want = {**head, **m.to_dict()}
    as_json = msgspec.json.decode(wire.delivery_json(m, lease, attempt, deadline, sub=sub))
    assert list(as_json) == list(want)
    assert as_json == {**head, **msgspec.json.decode(m.to_json())}
    as_msgpack = msgspec.msgpack.decode(wire.delivery_msgpack(m, lease, attempt, deadline, sub))
    assert as_msgpack == want and list(as_msgpack) == list(want)
    item = msgspec.json.decode(wire.delivery_json(m, lease, attempt, deadline))
    assert list(item)[:3] == ["lease", "attempt", "deadline"] and "op" not in item
