"""Hostile input against the new limits and scopes never gets a 5xx.

Hypothesis makes nested JSON (deep, wide, brackets hidden in strings, broken),
topic-list paging parameters, group names and upload lengths, and sends them
to a real server over real sockets: every answer is a success or a 4xx problem
document, JSON is refused as ``too-deep`` exactly when it nests past the limit,
and the server stays healthy. One server serves all of a test's examples.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.config import Config
from hubbub.protocol.depth import json_depth
from tests.conftest import UNIT, HubServer
from tests.transports.test_ws import JSON_PROTO, ws_client

LIMIT = 8
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
pytestmark = pytest.mark.timeout(120 * UNIT)


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"limits": {"json_depth": LIMIT, "upload_bytes": 10_000}})


@pytest.fixture
def engine() -> str:
    return "memory"  # the doors' parsing is the same on every engine


openers = st.sampled_from(["[", "{\"a\":", "[1,", "{\"[\":", "[\"]\\\"[\","])
closers = {"[": "]", "{\"a\":": "}", "[1,": "]", "{\"[\":": "}", "[\"]\\\"[\",": "]"}


@st.composite
def nested(draw: st.DrawFn) -> str:
    """JSON nested 0-40 deep (valid), or the same cut short or with stray brackets."""
    stack = draw(st.lists(openers, max_size=40))
    inner = draw(st.sampled_from(["1", "\"x]\"", "[]", "{}", "\"\\\"{\""]))
    text = "".join(stack) + inner + "".join(closers[o] for o in reversed(stack))
    damage = draw(st.sampled_from(["", "cut", "stray"]))
    if damage == "cut" and text:
        text = text[: draw(st.integers(0, len(text) - 1))]
    elif damage == "stray":
        text = draw(st.sampled_from(["[", "]", "{", "}", "\""])) + text
    return text


PRINTABLE = st.characters(min_codepoint=0x21, max_codepoint=0x7E)


def problem_or_success(r: Any, *, documented: tuple[int, ...] = ()) -> None:
    assert r.status_code < 500 or r.status_code in documented, r.text
    if r.status_code >= 400:
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"]


def valid_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@SETTINGS
@given(text=nested())
async def test_nested_json_on_every_door(hub_server: HubServer, text: str) -> None:
    """Publish, batch, request, job: 400 too-deep exactly past the limit, else the
    door's usual answer; a WebSocket frame closes 1007 past it, else answers."""
    deep = valid_json(text) and json_depth(text) > LIMIT
    h = {"content-type": "application/json"}
    async with hub_server.client() as c:
        r = await c.post("/v1/topics/h.a", content=text, headers=h)
        problem_or_success(r)
        if valid_json(text):
            assert (r.status_code == 400 and r.json()["code"] == "too-deep") == deep, r.text
            assert (r.status_code == 201) == (not deep)
        batch = '[{"topic":"h.b","data":' + text + "}]"
        problem_or_success(await c.post("/v1/publish", content=batch))
        problem_or_success(await c.post("/v1/jobs/h", content=text, headers=h))
        problem_or_success(await c.post("/v1/requests/h.svc?timeout=0.01", content=text,
                                        headers=h), documented=(503, 504))
        async with c.stream("GET", "/v1/topics/h.a/events", params={"info": text}) as r:
            if r.status_code >= 400:  # else a stream began: status enough
                await r.aread()
            problem_or_success(r)
    async with ws_client(hub_server, JSON_PROTO) as ws:
        frame = '{"op":"pub","id":1,"topic":"h.c","data":' + text + "}"
        await ws.ws.send(frame)
        if not valid_json(frame) or json_depth(frame) > LIMIT + 1:
            code, _, _ = await ws.closed()
            assert code == 1007
        else:
            reply = await ws.recv()
            assert reply["op"] in ("ok", "err"), reply


@SETTINGS
@given(after=st.text(max_size=30), limit=st.text(max_size=8),  # query values: any text
       pattern=st.one_of(st.none(), st.text(max_size=20), st.sampled_from(["h.*", ">", "*.a"])))
async def test_topic_paging_parameters(hub_server: HubServer, after: str, limit: str,
                                       pattern: str | None) -> None:
    """Any ``after``, ``limit`` and ``pattern``: a page or a 400."""
    async with hub_server.client() as c:
        await c.post("/v1/topics/h.a", json=1)
        params = {"after": after, "limit": limit}
        if pattern is not None:
            params["pattern"] = pattern
        r = await c.get("/v1/topics", params=params)
        problem_or_success(r)
        assert r.status_code in (200, 400)


@SETTINGS
@given(group=st.one_of(st.text(PRINTABLE, max_size=70), st.from_regex(r"jobs-[a-z]{0,5}", fullmatch=True),
                       st.sampled_from(["jobs-", "JOBS-x", "jobs_x", "x" * 64, "x" * 65])),
       method=st.sampled_from(["pull", "get", "delete"]))
async def test_group_names(hub_server: HubServer, group: str, method: str) -> None:
    """Any group name on pull, info and delete: an answer or a 4xx, ``jobs-`` refused."""
    async with hub_server.client() as c:
        path = "/v1/groups/" + group.replace("/", "%2F").replace("?", "%3F").replace("#", "%23")
        if method == "pull":
            r = await c.post(path + "/pull", params={"topic": "h.a"})
        elif method == "get":
            r = await c.get(path)
        else:
            r = await c.delete(path)
        problem_or_success(r)
        if group.startswith("jobs-") and method == "pull" and r.status_code != 404:
            assert r.status_code in (400, 403), r.text


@SETTINGS
@given(length=st.one_of(st.integers(0, 20_000).map(str), st.text(PRINTABLE, max_size=25)))
async def test_upload_lengths_against_the_quota(hub_server: HubServer, length: str) -> None:
    """Any Upload-Length: 201, or 400/412/413, never more than the quota in all."""
    async with hub_server.client() as c:
        r = await c.post("/v1/uploads/", headers={"Tus-Resumable": "1.0.0",
                                                  "Upload-Length": length})
        problem_or_success(r)
        if r.status_code == 413:
            assert r.json().get("limit") in (None, "upload_bytes")
