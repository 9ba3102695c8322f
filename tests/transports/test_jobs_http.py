"""Jobs over HTTP, SSE and WebSocket, on a real server, every engine.

A job's states are followed over all four doors at once (short poll, long
poll, SSE, WebSocket on ``jobs.<id>``) and must read the same. Bad input on
every endpoint is a 4xx problem document that changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import string
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from hubbub.config import Config
from tests.conftest import UNIT, HubServer, start_server, store_url

SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
Step = tuple[str, int, int, Any]


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"jobs": {"max_attempts": 2, "keep": "1h", "lease": 30}})


def problem(r: httpx.Response, status: int, code: str | None = None,
            field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.text
    doc: dict[str, Any] = r.json()
    assert doc["status"] == status and doc["detail"] and doc["code"], doc
    if code is not None:
        assert doc["code"] == code, doc
    if field is not None:
        assert doc.get("field") == field, doc
    return doc


async def submit(client: httpx.AsyncClient, queue: str, data: Any = None,
                 **headers: str) -> dict[str, Any]:
    r = await client.post(f"/v1/jobs/{queue}", json=data, headers=headers)
    assert r.status_code == 202, r.text
    doc: dict[str, Any] = r.json()
    assert r.headers["location"] == f"/v1/jobs/{doc['id']}"
    return doc


async def take(client: httpx.AsyncClient, queue: str, **params: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/jobs/{queue}/take", params=params)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


async def report(client: httpx.AsyncClient, job_id: str, action: str,
                 **body: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/jobs/{job_id}/{action}", json=body)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def step(doc: dict[str, Any]) -> Step:
    return doc["state"], doc["version"], doc["attempts"], doc["progress"]


# -- the happy path, over every door --------------------------------------------------


class Followers:
    """The four doors following one job; each keeps the states it saw."""

    def __init__(self, srv: HubServer, client: httpx.AsyncClient, job_id: str) -> None:
        self.srv, self.client, self.job_id = srv, client, job_id
        self.seen: dict[str, list[Step]] = {d: [] for d in ("poll", "longpoll", "sse", "ws")}
        self.tasks = [asyncio.create_task(getattr(self, d)()) for d in self.seen]

    def _see(self, door: str, doc: dict[str, Any]) -> bool:
        if not self.seen[door] or self.seen[door][-1] != step(doc):
            self.seen[door].append(step(doc))
        return doc["state"] in ("succeeded", "failed")

    async def poll(self) -> None:
        while True:
            r = await self.client.get(f"/v1/jobs/{self.job_id}")
            if self._see("poll", r.json()):
                return
            await asyncio.sleep(0.01)

    async def longpoll(self) -> None:
        version = 0
        while True:
            r = await self.client.get(f"/v1/jobs/{self.job_id}",
                                      params={"wait": 10, "version": version})
            doc = r.json()
            version = doc["version"]
            if self._see("longpoll", doc):
                return

    async def sse(self) -> None:
        async with aconnect_sse(self.client, "GET", f"/v1/jobs/{self.job_id}/events") as src:
            kinds = []
            async for ev in src.aiter_sse():
                kinds.append(ev.event)
                if ev.event == "message":
                    self._see("sse", json.loads(ev.data)["data"])
            assert kinds[0] == "ready" and kinds[-1] == "close", kinds

    async def ws(self) -> None:
        async with connect(self.srv.ws_url + "/v1/ws",
                           subprotocols=["hubbub.v1.json"]) as ws:  # type: ignore[list-item]
            await ws.send(json.dumps({"op": "sub", "id": 1, "topics": [f"jobs.{self.job_id}"],
                                      "after": "start"}))
            while True:
                frame = json.loads(await ws.recv())
                if frame["op"] == "msg" and self._see("ws", frame["data"]):
                    return

    async def caught_up(self, version: int) -> None:
        """Until every door saw ``version``."""
        async with asyncio.timeout(10 * UNIT):
            while any(not s or s[-1][1] < version for s in self.seen.values()):
                await asyncio.sleep(0.01)

    async def finished(self) -> None:
        async with asyncio.timeout(10 * UNIT):
            await asyncio.gather(*self.tasks)


@pytest.mark.smoke
@pytest.mark.sockets
async def test_four_doors_report_the_same_states(hub_server: HubServer,
                                                 client: httpx.AsyncClient) -> None:
    """Short poll, long poll, SSE and WebSocket on jobs.<id> read the same sequence of
    states, from queued through a retry to succeeded."""
    job = await submit(client, "transcode", {"file": "a.mp4"})
    doors = Followers(hub_server, client, job["id"])
    await doors.caught_up(1)
    first = await take(client, "transcode")
    assert first["data"] == {"file": "a.mp4"} and first["attempts"] == 1
    await doors.caught_up(2)
    await doors.caught_up((await report(client, job["id"], "progress", lease=first["lease"],
                                        progress=50))["version"])
    await doors.caught_up((await report(client, job["id"], "fail", lease=first["lease"],
                                        error="flaky disk", retry=True))["version"])
    second = await take(client, "transcode")
    await doors.caught_up(second["version"])
    await doors.caught_up((await report(client, job["id"], "progress", lease=second["lease"],
                                        progress=30, message="hashing"))["version"])
    done = await report(client, job["id"], "complete", lease=second["lease"],
                        result={"sha256": "00ff"})
    await doors.finished()
    expected = [("queued", 1, 0, None), ("running", 2, 1, None), ("running", 3, 1, 50.0),
                ("queued", 4, 1, 50.0), ("running", 5, 2, None), ("running", 6, 2, 30.0),
                ("succeeded", 7, 2, 100.0)]
    assert doors.seen == {d: expected for d in doors.seen}
    assert done["result"] == {"sha256": "00ff"} and done["error"] is None
    r = await client.get(f"/v1/jobs/{job['id']}")
    assert r.json() == done


async def test_submit_is_idempotent_and_keeps_bytes(client: httpx.AsyncClient) -> None:
    """The same Idempotency-Key gives the same job; non-JSON data travels as base64."""
    first = await submit(client, "q", {"n": 1}, **{"Idempotency-Key": '"abc"'})
    r = await client.post("/v1/jobs/q", json={"n": 2}, headers={"Idempotency-Key": "abc"})
    assert r.status_code == 202 and r.json() == {**first, "duplicate": True}
    raw = await client.post("/v1/jobs/q", content=b"\x00\xff",
                            headers={"Content-Type": "video/mp4"})
    assert raw.status_code == 202
    got = await take(client, "q")
    assert got["id"] == first["id"] and got["data"] == {"n": 1}
    got = await take(client, "q")
    assert (got["content_type"], got["data"]) == ("video/mp4", "AP8=")
    r = await client.post("/v1/jobs/q/take", params={"wait": 0.2})
    assert r.status_code == 204


async def test_long_poll_answers_on_the_next_change(client: httpx.AsyncClient) -> None:
    """?wait= holds until the job changes, and answers a finished job at once."""
    job = await submit(client, "q", 1)
    waiting = asyncio.create_task(client.get(f"/v1/jobs/{job['id']}", params={"wait": 10}))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    got = await take(client, "q")
    r = await asyncio.wait_for(waiting, 5 * UNIT)
    assert r.json()["state"] == "running"
    started = asyncio.get_running_loop().time()
    r = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 0.3})
    assert r.json()["version"] == 2 and asyncio.get_running_loop().time() - started >= 0.25
    await report(client, job["id"], "complete", lease=got["lease"])
    r = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 30, "version": 50})
    assert r.json()["state"] == "succeeded"


async def test_sse_after_the_end_says_stop(client: httpx.AsyncClient) -> None:
    """Reconnecting to a finished job's stream from its last event answers 204."""
    job = await submit(client, "q", 1)
    got = await take(client, "q")
    await report(client, job["id"], "complete", lease=got["lease"], result=7)
    async with aconnect_sse(client, "GET", f"/v1/jobs/{job['id']}/events") as src:
        events = [ev async for ev in src.aiter_sse()]
    assert [e.event for e in events] == ["ready", "message", "message", "message", "close"]
    last = events[-2].id
    r = await client.get(f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": last})
    assert r.status_code == 204
    r = await client.get(f"/v1/jobs/{job['id']}/events", params={"after": events[1].id})
    assert r.status_code == 200 and "succeeded" in r.text


async def test_exhausted_attempts_fail_the_job(hub_server: HubServer,
                                               client: httpx.AsyncClient) -> None:
    """A worker that never reports loses its lease; on the last attempt the job fails
    and its delivery goes to the dead-letter topic."""
    hub_server.hub.jobs.sweep_interval = 0.1
    job = await submit(client, "q", 1)
    await take(client, "q", lease=0.3)
    async with asyncio.timeout(10 * UNIT):
        while (await client.get(f"/v1/jobs/{job['id']}")).json()["state"] != "queued":
            await asyncio.sleep(0.05)
    second = await take(client, "q", lease=0.3)
    assert second["attempts"] == 2
    r = await client.get(f"/v1/jobs/{job['id']}", params={"wait": 10, "version": 5})
    doc = r.json()
    assert doc["state"] == "failed" and "attempt 2 of 2" in doc["error"], doc
    r = await client.post("/v1/jobs/q/take")
    assert r.status_code == 204
    r = await client.get("/v1/topics/dlq.jobs-q/messages", params={"after": "start"})
    (letter,) = r.json()["messages"]
    assert letter["data"]["attempts"] == 2


async def test_finished_jobs_expire(engine: str, tmp_path: Path) -> None:
    """A finished job is gone (404) [jobs] keep seconds after it finished."""
    srv = await start_server(store_url(engine, tmp_path),
                             Config.from_dict({"jobs": {"keep": 0.5}}))
    try:
        async with srv.client() as client:
            job = await submit(client, "q", 1)
            got = await take(client, "q")
            await report(client, job["id"], "complete", lease=got["lease"])
            assert (await client.get(f"/v1/jobs/{job['id']}")).status_code == 200
            await asyncio.sleep(0.7)
            problem(await client.get(f"/v1/jobs/{job['id']}"), 404, "not-found", "id")
            problem(await client.get(f"/v1/jobs/{job['id']}/events"), 404, "not-found")
    finally:
        await srv.stop()


# -- bad input ----------------------------------------------------------------------------


@pytest.fixture
async def running(client: httpx.AsyncClient) -> dict[str, Any]:
    """A running job of queue q (its take answer)."""
    await submit(client, "q", {"n": 1})
    return await take(client, "q")


async def test_bad_requests_per_endpoint(client: httpx.AsyncClient,
                                         running: dict[str, Any]) -> None:
    """Each malformed request gets its 4xx problem and changes nothing."""
    job_id, lease = running["id"], running["lease"]
    unknown = "0" * 32
    before = (await client.get(f"/v1/jobs/{job_id}")).json()
    bad: list[tuple[Callable[[], Awaitable[httpx.Response]], int, str, str | None]] = [
        (lambda: client.post("/v1/jobs/a.b", json=1), 400, "invalid-topic", "queue"),
        (lambda: client.post("/v1/jobs/" + "x" * 60, json=1), 400, "invalid-topic", "queue"),
        (lambda: client.post("/v1/jobs/q", content=b"{nope",
                             headers={"Content-Type": "application/json"}),
         400, "invalid-request", "data"),
        (lambda: client.post("/v1/jobs/q", json=1, headers={"Idempotency-Key": "a b"}),
         400, "invalid-request", "Idempotency-Key"),
        (lambda: client.post("/v1/jobs/q", content=b"x" * (1 << 20 | 1),
                             headers={"Content-Type": "text/plain"}),
         413, "payload-too-large", None),
        (lambda: client.post("/v1/jobs/q", content=b"1",
                             headers={"Content-Type": "not a type"}),
         400, "invalid-request", "content-type"),
        (lambda: client.get(f"/v1/jobs/{unknown}"), 404, "not-found", "id"),
        (lambda: client.get("/v1/jobs/xyz"), 400, "invalid-request", "id"),
        (lambda: client.get(f"/v1/jobs/{job_id}", params={"wait": -1}),
         400, "invalid-request", "wait"),
        (lambda: client.get(f"/v1/jobs/{job_id}", params={"wait": 61}),
         400, "invalid-request", "wait"),
        (lambda: client.get(f"/v1/jobs/{job_id}", params={"wait": 1, "version": "-1"}),
         400, "invalid-request", "version"),
        (lambda: client.get(f"/v1/jobs/{job_id}?wait=1&wait=2"),
         400, "invalid-request", "wait"),
        (lambda: client.get(f"/v1/jobs/{unknown}/events"), 404, "not-found", "id"),
        (lambda: client.get(f"/v1/jobs/{job_id}/events", params={"after": "garbage"}),
         400, "invalid-cursor", None),
        (lambda: client.get(f"/v1/jobs/{job_id}/events", headers={"Last-Event-ID": "x.y.z"}),
         400, "invalid-cursor", "Last-Event-ID"),
        (lambda: client.post("/v1/jobs/a.b/take"), 400, "invalid-topic", "queue"),
        (lambda: client.post("/v1/jobs/q/take", params={"wait": "soon"}),
         400, "invalid-request", "wait"),
        (lambda: client.post("/v1/jobs/q/take", params={"lease": "0"}),
         400, "invalid-request", "lease"),
        (lambda: client.post("/v1/jobs/q/take", params={"lease": "99999999"}),
         400, "invalid-request", "lease"),
        (lambda: client.post(f"/v1/jobs/{job_id}/progress", content=b"{"),
         400, "invalid-request", "body"),
        (lambda: client.post(f"/v1/jobs/{job_id}/progress", json={}),
         400, "invalid-request", None),
        (lambda: client.post(f"/v1/jobs/{job_id}/progress", json={"lease": lease, "x": 1}),
         400, "invalid-request", None),
        (lambda: client.post(f"/v1/jobs/{job_id}/progress", json={"lease": lease,
                                                                   "progress": 101}),
         400, "invalid-request", "progress"),
        (lambda: client.post(f"/v1/jobs/{job_id}/progress", json={"lease": lease,
                                                                   "progress": "half"}),
         400, "invalid-request", "progress"),
        (lambda: client.post(f"/v1/jobs/{job_id}/progress", json={"lease": lease,
                                                                   "message": "m" * 1001}),
         400, "invalid-request", "message"),
        (lambda: client.post(f"/v1/jobs/{job_id}/progress", json={"lease": "bogus"}),
         400, "invalid-request", "lease"),
        (lambda: client.post(f"/v1/jobs/{job_id}/progress", json={"lease": "1.0123456789ab"}),
         409, "conflict", "lease"),
        (lambda: client.post(f"/v1/jobs/{unknown}/progress", json={"lease": lease}),
         404, "not-found", "id"),
        (lambda: client.post(f"/v1/jobs/{job_id}/complete", json={"result": 1}),
         400, "invalid-request", None),
        (lambda: client.post(f"/v1/jobs/{job_id}/complete",
                             json={"lease": "1.0123456789ab", "result": 1}),
         409, "conflict", "lease"),
        (lambda: client.post(f"/v1/jobs/{job_id}/fail", json={"lease": lease}),
         400, "invalid-request", None),
        (lambda: client.post(f"/v1/jobs/{job_id}/fail", json={"lease": lease, "error": ""}),
         400, "invalid-request", "error"),
        (lambda: client.post(f"/v1/jobs/{job_id}/fail", json={"lease": lease, "error": "e",
                                                               "retry": "yes"}),
         400, "invalid-request", None),
        (lambda: client.post(f"/v1/jobs/{job_id}/fail", json={"lease": lease, "error": "e",
                                                               "delay": -5}),
         400, "invalid-request", "delay"),
        (lambda: client.post(f"/v1/jobs/{job_id}/fail", content=b"x" * (1 << 20),
                             headers={"Content-Type": "application/json"}),
         413, "payload-too-large", "body"),
        (lambda: client.delete(f"/v1/jobs/{job_id}"), 405, "method-not-allowed", None),
        (lambda: client.put("/v1/jobs/q/take"), 405, "method-not-allowed", None),
    ]
    for call, status, code, field in bad:
        problem(await call(), status, code, field)
    assert (await client.get(f"/v1/jobs/{job_id}")).json() == before
    # The running job's lease still works after all that.
    done = await report(client, job_id, "complete", lease=lease, result=[1, 2])
    assert done["state"] == "succeeded" and done["version"] == before["version"] + 1
    problem(await client.post(f"/v1/jobs/{job_id}/progress", json={"lease": lease}),
            409, "conflict", "lease")


async def test_a_stale_worker_gets_409(client: httpx.AsyncClient) -> None:
    """A worker whose job was taken again by another cannot change it."""
    job = await submit(client, "q", 1)
    first = await take(client, "q", lease=0.2)
    await asyncio.sleep(0.3)
    second = await take(client, "q")
    assert second["attempts"] == 2
    for action, body in [("progress", {"progress": 5}), ("complete", {"result": 1}),
                         ("fail", {"error": "late"})]:
        r = await client.post(f"/v1/jobs/{job['id']}/{action}",
                              json={"lease": first["lease"], **body})
        problem(r, 409, "conflict", "lease")
    assert (await client.get(f"/v1/jobs/{job['id']}")).json()["version"] == second["version"]


ids = st.one_of(st.text(string.hexdigits, min_size=30, max_size=34),
                st.text(max_size=40).filter(lambda s: "/" not in s and "?" not in s
                                            and "#" not in s and s not in ("", ".", "..")))
bodies = st.one_of(
    st.binary(max_size=60),
    st.dictionaries(st.sampled_from(["lease", "progress", "message", "result", "error",
                                     "retry", "delay", "x"]),
                    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                              st.text(max_size=20)), max_size=5).map(
        lambda d: json.dumps(d).encode()),
)


@given(job_id=ids, action=st.sampled_from(["progress", "complete", "fail"]), body=bodies)
@SETTINGS
async def test_hostile_worker_reports_never_break_a_job(
    client: httpx.AsyncClient, running: dict[str, Any], job_id: str, action: str, body: bytes
) -> None:
    """Random reports at random ids are 4xx problems; the running job stays as it was."""
    from urllib.parse import quote

    before = (await client.get(f"/v1/jobs/{running['id']}")).json()
    r = await client.post(f"/v1/jobs/{quote(job_id, safe='')}/{action}", content=body,
                          headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    if r.headers.get("content-type") == "application/problem+json":
        assert r.json()["code"]
    assert (await client.get(f"/v1/jobs/{running['id']}")).json() == before
