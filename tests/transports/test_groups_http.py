"""Consumer groups over HTTP (pull, ack, nack, extend, info), on a real server, every engine.

Bad input is refused with a 4xx problem document and changes nothing: that is
checked with ``GET /v1/groups/{group}`` and by pulling afterwards. The hub's
clock is the test's (:mod:`tests.clocks`): leases and delays run out when the
test moves it; a pull waiting for a lease to run out waits on the wall clock.
"""

from __future__ import annotations

import asyncio
import logging
import string
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hubbub.config import Config
from tests.clocks import Clock, clock_fixture, clocked_hub_server  # noqa: F401 (fixtures)
from tests.conftest import UNIT, HubServer

SETTINGS = settings(
    max_examples=50, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
LEASE_ID = r"(0|[1-9][0-9]{0,18})\.[0-9a-f]{12}"


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"defaults": {"max_deliver": 3}})


async def publish(client: httpx.AsyncClient, topic: str, *values: Any) -> None:
    r = await client.post("/v1/publish", json=[{"topic": topic, "data": v} for v in values])
    assert r.status_code == 201, r.text


async def pull(client: httpx.AsyncClient, group: str, **params: Any) -> list[dict[str, Any]]:
    r = await client.post(f"/v1/groups/{group}/pull", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["messages"]
    return items


async def settle(
    client: httpx.AsyncClient, group: str, action: str, ids: list[str], **body: Any
) -> httpx.Response:
    return await client.post(f"/v1/groups/{group}/{action}", json={"ids": ids, **body})


async def info(client: httpx.AsyncClient, group: str) -> dict[str, Any]:
    r = await client.get(f"/v1/groups/{group}")
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def problem(r: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    doc: dict[str, Any] = r.json()
    assert doc["code"] == code and doc["detail"], doc
    if field is not None:
        assert doc.get("field") == field, doc
    return doc


async def make_group(client: httpx.AsyncClient, group: str, topic: str, n: int) -> None:
    """A group over ``topic`` holding ``n`` messages 0..n-1, none leased."""
    assert await pull(client, group, topic=topic, start="start") == []
    if n:
        await publish(client, topic, *range(n))


# -- the happy paths --------------------------------------------------------------------


@pytest.mark.smoke
@pytest.mark.sockets
async def test_pull_leases_messages_in_the_shape_of_every_door(
    client: httpx.AsyncClient,
) -> None:
    """A pulled item is the poll's message object plus lease, attempt 1 and deadline."""
    await make_group(client, "g", "q.a", 3)
    before = int(time.time() * 1000)
    items = await pull(client, "g", max=2, lease=20)
    page = (await client.get("/v1/topics/q.a/messages")).json()["messages"]
    assert [{k: v for k, v in x.items() if k not in ("lease", "attempt", "deadline")}
            for x in items] == page[:2]
    assert list(items[0])[:3] == ["lease", "attempt", "deadline"]
    for x in items:
        assert x["attempt"] == 1
        assert before + 19_000 <= x["deadline"] <= before + 21_000 + 5_000 * UNIT
    assert (await info(client, "g"))["pending"] == 2
    r = await settle(client, "g", "ack", [x["lease"] for x in items])
    assert r.status_code == 200 and set(r.json()["results"].values()) == {"ok"}
    assert (await info(client, "g"))["pending"] == 0
    assert [x["data"] for x in await pull(client, "g", max=10)] == [2]


async def test_new_group_starts_at_head_or_tail(client: httpx.AsyncClient) -> None:
    """start=start takes retained history; start=end (the default) only later messages."""
    await publish(client, "h.t", 0, 1, 2)
    head = await pull(client, "head", topic="h.t", max=10, start="start")
    tail = await pull(client, "tail", topic="h.t", max=10)
    assert [x["data"] for x in head] == [0, 1, 2] and tail == []
    await publish(client, "h.t", 3)
    assert [x["data"] for x in await pull(client, "tail", max=10)] == [3]
    # start only matters for a new group
    assert [x["data"] for x in await pull(client, "tail", max=10, start="start")] == []


async def test_group_info_and_its_cursor(client: httpx.AsyncClient) -> None:
    """GET shows topics, pending and a cursor after which a poll shows what is still to come."""
    await make_group(client, "inf", "i.*", 0)
    await publish(client, "i.a", "a0", "a1")
    await publish(client, "i.b", "b0")
    await pull(client, "inf", max=2)
    doc = await info(client, "inf")
    assert doc["group"] == "inf" and doc["topics"] == ["i.*"] and doc["pending"] == 2
    assert doc["max_deliver"] == 3 and doc["dead_letter_topic"] == "dlq.inf"
    assert isinstance(doc["created"], int)
    rest = await client.get("/v1/messages", params={"topic": "i.*", "after": doc["cursor"]})
    assert [m["data"] for m in rest.json()["messages"]] == ["b0"]


async def test_long_poll_pull_wakes_on_publish(client: httpx.AsyncClient) -> None:
    """A pull with wait is held until a message is stored, then answers at once."""
    await make_group(client, "lp", "lp.t", 0)
    call = asyncio.create_task(pull(client, "lp", wait=10 * UNIT))
    await asyncio.sleep(0.2 * UNIT)
    assert not call.done()
    t0 = asyncio.get_running_loop().time()
    await publish(client, "lp.t", "hello")
    async with asyncio.timeout(2 * UNIT):
        items = await call
    assert [x["data"] for x in items] == ["hello"]
    assert asyncio.get_running_loop().time() - t0 < 1 * UNIT


async def test_long_poll_pull_wakes_when_a_lease_runs_out(client: httpx.AsyncClient) -> None:
    """An unacked message comes back after its lease, to a waiting pull, attempt 2."""
    await make_group(client, "exp", "exp.t", 1)
    first = await pull(client, "exp", lease=0.5)
    async with asyncio.timeout(5 * UNIT):
        again = await pull(client, "exp", wait=5 * UNIT)
    assert [(x["data"], x["attempt"]) for x in again] == [(0, 2)]
    assert again[0]["lease"] != first[0]["lease"]
    r = await settle(client, "exp", "ack", [first[0]["lease"]])
    assert problem(r, 409, "conflict", "ids")["results"] == {first[0]["lease"]: "expired"}
    assert (await settle(client, "exp", "ack", [again[0]["lease"]])).status_code == 200


async def test_nack_gives_back_after_the_delay(client: httpx.AsyncClient, clock: Clock) -> None:
    """A nacked message is due again after its delay, not before."""
    await make_group(client, "nk", "nk.t", 1)
    [x] = await pull(client, "nk")
    r = await settle(client, "nk", "nack", [x["lease"]], delay=60)
    assert r.json() == {"results": {x["lease"]: "ok"}}
    assert await pull(client, "nk") == []
    clock.advance(50)
    assert await pull(client, "nk") == []
    clock.advance(10)
    async with asyncio.timeout(5 * UNIT):
        again = await pull(client, "nk", wait=5 * UNIT)
    assert [(y["data"], y["attempt"]) for y in again] == [(0, 2)]


async def test_extend_keeps_a_lease(client: httpx.AsyncClient, clock: Clock) -> None:
    """An extended lease outlives its first deadline; nobody else gets the message."""
    await make_group(client, "ext", "ext.t", 1)
    [x] = await pull(client, "ext", lease=5)
    r = await settle(client, "ext", "extend", [x["lease"]], lease=100)
    assert r.json() == {"results": {x["lease"]: "ok"}}
    clock.advance(8)
    assert await pull(client, "ext", wait=0.3) == []
    assert (await settle(client, "ext", "ack", [x["lease"]])).status_code == 200


async def test_settle_reports_each_id(client: httpx.AsyncClient) -> None:
    """200 with every outcome when one id was settled; 409 when none was; repeats count once."""
    await make_group(client, "mix", "mix.t", 2)
    a, b = await pull(client, "mix", max=2)
    ghost = "999.0123456789ab"
    r = await settle(client, "mix", "ack", [a["lease"], ghost, a["lease"]])
    assert r.status_code == 200
    assert r.json() == {"results": {a["lease"]: "ok", ghost: "unknown"}}
    r = await settle(client, "mix", "ack", [a["lease"]])
    assert problem(r, 409, "conflict", "ids")["results"] == {a["lease"]: "unknown"}
    assert (await info(client, "mix"))["pending"] == 1
    assert (await settle(client, "mix", "nack", [b["lease"]], error="x")).status_code == 200


async def test_foreign_lease_ids_change_nothing(client: httpx.AsyncClient) -> None:
    """Lease ids of another group are refused (409) and neither group changes."""
    await make_group(client, "ga", "f.t", 2)
    await pull(client, "gb", topic="f.t", start="start")
    mine = await pull(client, "ga", max=1, lease=30)
    theirs = await pull(client, "gb", max=2, lease=30)
    before = (await info(client, "ga"), await info(client, "gb"))
    for action, body in [("ack", {}), ("nack", {"delay": 0}), ("extend", {"lease": 1})]:
        r = await settle(client, "ga", action, [t["lease"] for t in theirs], **body)
        doc = problem(r, 409, "conflict", "ids")
        assert set(doc["results"].values()) <= {"unknown", "expired"}
    assert (await info(client, "ga"), await info(client, "gb")) == before
    # ga still holds its lease, gb both of its: nothing is due in either
    assert await pull(client, "gb") == []
    assert [x["data"] for x in await pull(client, "ga", max=5)] == [1]
    assert (await settle(client, "ga", "ack", [mine[0]["lease"]])).status_code == 200


async def test_group_of_other_topics_conflicts(client: httpx.AsyncClient) -> None:
    """Naming other topics for an existing group is 409; an unknown group without topics 404."""
    await pull(client, "c", topic="c.a")
    problem(await client.post("/v1/groups/c/pull", params={"topic": "c.b"}), 409, "conflict")
    problem(await client.post("/v1/groups/none/pull"), 404, "not-found")
    problem(await client.get("/v1/groups/none"), 404, "not-found", "group")
    problem(await settle(client, "none", "ack", ["1.0123456789ab"]), 404, "not-found")
    assert (await info(client, "c"))["topics"] == ["c.a"]


async def test_poison_message_goes_to_the_dead_letter_topic(client: httpx.AsyncClient) -> None:
    """After max_deliver tries a message moves to dlq.<group> with its attempts and last error."""
    await make_group(client, "p", "p.t", 1)
    await publish(client, "p.t", {"fine": True})
    for attempt in (1, 2, 3):
        [x] = await pull(client, "p")
        assert (x["data"], x["attempt"]) == (0, attempt)
        await settle(client, "p", "nack", [x["lease"]], error=f"boom {attempt}")
    assert [x["data"] for x in await pull(client, "p", max=5)] == [{"fine": True}]
    dead = (await client.get("/v1/topics/dlq.p/messages")).json()["messages"]
    assert len(dead) == 1
    body = dead[0]["data"]
    assert body["group"] == "p" and body["topic"] == "p.t" and body["offset"] == 1
    assert body["attempts"] == 3 and body["error"] == "boom 3" and body["data"] == 0
    assert (await info(client, "p"))["pending"] == 1


async def test_expired_leases_count_as_tries(client: httpx.AsyncClient, clock: Clock) -> None:
    """Leases that run out count too; the dead letter then has no error."""
    await make_group(client, "px", "px.t", 1)
    for _ in range(3):
        assert len(await pull(client, "px", lease=10, wait=3 * UNIT)) == 1
        clock.advance(15)
    assert await pull(client, "px") == []
    [dead] = (await client.get("/v1/topics/dlq.px/messages")).json()["messages"]
    assert dead["data"]["attempts"] == 3 and dead["data"]["error"] is None


async def test_a_pull_whose_client_left_takes_nothing(
    hub_server: HubServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A long-poll pull ends quietly with its client: a message stored later goes to the
    next pull."""
    caplog.set_level(logging.ERROR)
    async with hub_server.client() as c:
        await make_group(c, "gone", "gone.t", 0)
    async with hub_server.client() as leaver:
        task = asyncio.create_task(pull(leaver, "gone", wait=10 * UNIT))
        await asyncio.sleep(0.2 * UNIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.sleep(0.2 * UNIT)
    async with hub_server.client() as c:
        await publish(c, "gone.t", "x")
        assert [(x["data"], x["attempt"]) for x in await pull(c, "gone")] == [("x", 1)]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- bad input --------------------------------------------------------------------------

BAD_PULLS = [
    ({"max": "0"}, "max"), ({"max": "-1"}, "max"), ({"max": "1001"}, "max"),
    ({"max": "99999999999"}, "max"), ({"max": "1.5"}, "max"), ({"max": "x"}, "max"),
    ({"lease": "-1"}, "lease"), ({"lease": "0"}, "lease"), ({"lease": "0.05"}, "lease"),
    ({"lease": "43201"}, "lease"), ({"lease": "1e9"}, "lease"), ({"lease": "nan"}, "lease"),
    ({"wait": "-1"}, "wait"), ({"wait": "61"}, "wait"), ({"wait": "inf"}, "wait"),
    ({"start": "middle"}, "start"), ({"max": ["1", "2"]}, "max"),
    ({"topic": "a..b"}, "topic"), ({"topic": "bad topic"}, "topic"),
    ({"topic": [f"bad.t{i}" for i in range(101)]}, "topic"),
]


@pytest.mark.parametrize(("params", "field"), BAD_PULLS)
async def test_bad_pulls_change_nothing(
    client: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    """A pull with a bad parameter is a 400 naming it; no group is made, none is leased."""
    await make_group(client, "bad", "bad.t", 2)
    code = "invalid-topic" if field == "topic" and len(params["topic"]) < 100 else \
        "invalid-request"
    problem(await client.post("/v1/groups/bad/pull", params=params), 400, code, field)
    problem(await client.post("/v1/groups/new/pull", params={"topic": "bad.t", **params}),
            400, code, field)
    problem(await client.get("/v1/groups/new"), 404, "not-found")
    assert (await info(client, "bad"))["pending"] == 0
    assert [x["data"] for x in await pull(client, "bad", max=5)] == [0, 1]


@pytest.mark.parametrize("name", ["a b", "x" * 65, "a.b", "a*", "%00", "é", "a>"])
async def test_bad_group_names(client: httpx.AsyncClient, name: str) -> None:
    """A group name that is not one topic token of at most 64 characters is a 400."""
    for r in [
        await client.post(f"/v1/groups/{name}/pull", params={"topic": "x.y"}),
        await client.get(f"/v1/groups/{name}"),
        await settle(client, name, "ack", ["1.0123456789ab"]),
    ]:
        problem(r, 400, "invalid-request", "group")


BAD_SETTLES = [
    ("ack", b"", "body"), ("ack", b"{", "body"), ("ack", b"[]", "body"),
    ("ack", b"{}", "ids"), ("ack", b'{"ids":[]}', "ids"), ("ack", b'{"ids":"1.0123456789ab"}', "ids"),
    ("ack", b'{"ids":[1]}', "ids[0]"), ("ack", b'{"ids":["1.0123456789ab","nope"]}', "ids[1]"),
    ("ack", b'{"ids":["1.0123456789AB"]}', "ids[0]"), ("ack", b'{"ids":["01.0123456789ab"]}', "ids[0]"),
    ("ack", b'{"ids":["1.0123456789ab"],"delay":1}', "body"),
    ("ack", b'{"ids":[' + b",".join([b'"1.0123456789ab"'] * 1001) + b"]}", "ids"),
    ("nack", b'{"ids":["LEASE"],"delay":-1}', "delay"),
    ("nack", b'{"ids":["LEASE"],"delay":604801}', "delay"),
    ("nack", b'{"ids":["LEASE"],"delay":1e999}', "delay"),
    ("nack", b'{"ids":["LEASE"],"delay":"1"}', "delay"),
    ("nack", b'{"ids":["LEASE"],"delay":true}', "delay"),
    ("nack", b'{"ids":["LEASE"],"error":"' + b"x" * 1001 + b'"}', "error"),
    ("nack", b'{"ids":["LEASE"],"error":5}', "error"),
    ("extend", b'{"ids":["LEASE"],"lease":0}', "lease"),
    ("extend", b'{"ids":["LEASE"],"lease":-5}', "lease"),
    ("extend", b'{"ids":["LEASE"],"lease":43201}', "lease"),
    ("extend", b'{"ids":["LEASE"],"lease":null}', "lease"),
]


@pytest.mark.parametrize(("action", "body", "field"), BAD_SETTLES)
async def test_bad_settles_change_nothing(
    client: httpx.AsyncClient, action: str, body: bytes, field: str
) -> None:
    """A malformed ack, nack or extend is a 400 naming the field, and settles nothing."""
    await make_group(client, "bs", "bs.t", 1)
    [x] = await pull(client, "bs", lease=30)
    before = await info(client, "bs")
    body = body.replace(b"LEASE", x["lease"].encode())
    r = await client.post(f"/v1/groups/bs/{action}", content=body,
                          headers={"content-type": "application/json"})
    problem(r, 400, "invalid-request", field)
    assert await info(client, "bs") == before
    assert await pull(client, "bs") == []  # still leased to us
    assert (await settle(client, "bs", "ack", [x["lease"]])).status_code == 200


numbers = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", "0", "1", "1000", "1001", "0.1", "0.09", "43200", "60", "1e3", " 5",
                     "+5", "٣", "1.", ".5", "0x10"]),
    st.text(max_size=8),
)


@SETTINGS
@given(params=st.fixed_dictionaries(
    {}, optional={"max": numbers, "lease": numbers, "wait": numbers,
                  "start": st.sampled_from(["start", "end", "", "START", "x"])}))
async def test_any_pull_parameters(hub_server: HubServer, params: dict[str, str]) -> None:
    """Any max/lease/wait/start: a 200 with one message, or a 400 that made no group."""
    async with hub_server.client() as c:
        r = await c.post("/v1/groups/hyp-seed/pull", params={"topic": "hyp.t", "start": "end"})
        assert r.status_code == 200
        await publish(c, "hyp.t", "m")
        name = f"hyp-{time.monotonic_ns()}"
        r = await c.post(f"/v1/groups/{name}/pull",
                         params={"topic": "hyp.t", **params, "start": "start"})
        if r.status_code == 200:
            assert len(r.json()["messages"]) >= 1
        else:
            problem(r, 400, "invalid-request")
            problem(await c.get(f"/v1/groups/{name}"), 404, "not-found")
        r = await c.post("/v1/groups/hyp-seed/pull", params=params)
        assert r.status_code in (200, 400), r.text


lease_ids = st.one_of(
    st.from_regex(LEASE_ID, fullmatch=True),
    st.text(string.hexdigits + ".-0123456789", max_size=40),
    st.text(max_size=40),
    st.integers().map(str),
)


@SETTINGS
@given(ids=st.lists(lease_ids, min_size=0, max_size=5),
       action=st.sampled_from(["ack", "nack", "extend"]))
@example(ids=["9300000000000000000.000000000000"], action="ack")  # past 64 bits: was a 500
async def test_any_lease_ids(hub_server: HubServer, ids: list[str], action: str) -> None:
    """Made-up lease ids are a 400 (malformed) or 409 (unknown); the held lease is untouched."""
    async with hub_server.client() as c:
        if (await c.get("/v1/groups/ids")).status_code == 404:
            await make_group(c, "ids", "ids.t", 1)
            await pull(c, "ids", lease=600)
        before = await info(c, "ids")
        r = await settle(c, "ids", action, ids)
        assert r.status_code in (400, 409), r.text
        problem(r, r.status_code, "invalid-request" if r.status_code == 400 else "conflict")
        assert await info(c, "ids") == before
        assert await pull(c, "ids") == []


json_numbers = st.one_of(
    st.integers(-(10**20), 10**20), st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(),
    st.text(max_size=5),
)


@SETTINGS
@given(value=json_numbers, key=st.sampled_from(["delay", "lease"]))
async def test_any_settle_numbers(hub_server: HubServer, value: Any, key: str) -> None:
    """Any delay or lease value with an unknown id: 400 when bad, else 409; nothing changes."""
    async with hub_server.client() as c:
        if (await c.get("/v1/groups/num")).status_code == 404:
            await make_group(c, "num", "num.t", 1)
            await pull(c, "num", lease=600)
        before = await info(c, "num")
        action = "nack" if key == "delay" else "extend"
        r = await settle(c, "num", action, ["77.0123456789ab"], **{key: value})
        if r.status_code == 400:
            problem(r, 400, "invalid-request", key)
        else:
            problem(r, 409, "conflict", "ids")
        assert await info(c, "num") == before
