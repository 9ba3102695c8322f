"""Token hygiene: where ``?token=`` is taken, what waits may outlive, claims, and logs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from httpx_sse import aconnect_sse
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from hubbub.config import Config
from hubbub.core.auth import mint
from hubbub.protocol.redact import REDACTED, RedactTokens, redact
from tests.conftest import UNIT, HubServer, start_server

SECRET = b"a-test-secret-of-at-least-32-bytes!!"
CONFIG = {"auth": {"secret": SECRET.decode(), "leeway": 0}}


def token(ttl: float | None = 3600) -> str:
    return mint(SECRET, "alice", pub=["svc.>", "jobs-queue.>"], sub=["svc.>", "jobs.>"],
                ttl=ttl)


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
async def hub() -> AsyncIterator[HubServer]:
    srv = await start_server("memory://", Config.from_dict(CONFIG))
    try:
        yield srv
    finally:
        await srv.stop()


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["code"] == code
    return body


# -- ?token= on SSE and WebSocket only ------------------------------------------------

@pytest.mark.parametrize("method, path", [
    ("GET", "/v1/topics/svc.a/messages"), ("POST", "/v1/topics/svc.a"),
    ("GET", "/v1/topics"), ("POST", "/v1/publish"), ("GET", "/v1/messages?topic=svc.a"),
    ("POST", "/v1/jobs/q"),
])
async def test_query_token_is_refused_where_a_header_can_be_sent(
    hub: HubServer, method: str, path: str
) -> None:
    """Finding: ?token= was accepted on every route (and so landed in access logs)."""
    sep = "&" if "?" in path else "?"
    async with hub.client() as c:
        r = await c.request(method, f"{path}{sep}token={token()}", content=b"1",
                            headers={"Content-Type": "application/json"})
        body = assert_problem(r, 401, "unauthorized")
        assert "Authorization" in body["detail"] and body["field"] == "token"
        r = await c.get("/v1/topics/svc.a/messages", params={"after": "start"},
                        headers=bearer(token()))
        assert r.json()["messages"] == []  # nothing was stored


async def test_query_token_is_taken_on_sse_and_the_websocket(hub: HubServer) -> None:
    async with hub.client() as c:
        for path in ("/v1/topics/svc.a/events", "/v1/events?topic=svc.a"):
            sep = "&" if "?" in path else "?"
            async with aconnect_sse(c, "GET", f"{path}{sep}token={token()}") as source:
                assert source.response.status_code == 200
                assert (await anext(source.aiter_sse())).event == "ready"
        job = await c.post("/v1/jobs/q", json={"n": 1}, headers=bearer(token()))
        assert job.status_code == 202, job.text
        path = f"/v1/jobs/{job.json()['id']}/events?token={token()}"
        async with aconnect_sse(c, "GET", path) as source:
            assert source.response.status_code == 200
    async with asyncio.timeout(5 * UNIT):
        async with connect(f"{hub.ws_url}/v1/ws?token={token()}") as ws:
            await ws.send(json.dumps({"op": "sub", "id": 1, "topics": ["svc.a"]}))
            assert json.loads(await ws.recv())["op"] == "ok"


# -- exp and nbf are numbers ----------------------------------------------------------

@pytest.mark.parametrize("claims", [
    {"exp": "99999999999"}, {"nbf": "1"}, {"exp": True}, {"iat": "1"}, {"exp": [1]},
])
async def test_time_claims_must_be_numbers(hub: HubServer, claims: dict[str, Any]) -> None:
    """Finding: a numeric-string exp was accepted, and never enforced on open streams."""
    tok = jwt.encode({"sub": "alice", "hubbub": {"sub": ["svc.>"]}, **claims}, SECRET,
                     algorithm="HS256")
    async with hub.client() as c:
        r = await c.get("/v1/topics/svc.a/messages", headers=bearer(tok))
    assert_problem(r, 401, "unauthorized")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


# -- nothing held open outlives its token ---------------------------------------------

async def test_a_request_timeout_ends_with_its_token(hub: HubServer) -> None:
    """Finding: a request-reply timeout outlived its token. Asked to wait 60 s with a
    token that lives 2, the request ends as a timeout when the token does."""
    worker = mint(SECRET, "worker", sub=["svc.>", "echo"])  # present, never answers
    async with hub.client() as c, asyncio.timeout(20 * UNIT):
        r = await c.post("/v1/groups/echo/pull", params={"topic": "svc.echo", "lease": 60},
                         headers=bearer(worker))
        assert r.status_code == 200, r.text
        await hub.until_responder("svc.echo")
        r = await c.post("/v1/requests/svc.echo", params={"timeout": 60}, json={"q": 1},
                         headers=bearer(token(ttl=2)), timeout=70)
    assert_problem(r, 504, "timeout")


async def test_a_job_stream_ends_with_its_token(hub: HubServer) -> None:
    async with hub.client() as c:
        job = await c.post("/v1/jobs/q", json={"n": 1}, headers=bearer(token()))
        path = f"/v1/jobs/{job.json()['id']}/events"
        async with aconnect_sse(c, "GET", path, headers=bearer(token(ttl=2))) as source, \
                asyncio.timeout(20 * UNIT):
            events = [ev async for ev in source.aiter_sse()]
    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["message"] == "token expired"


# -- logs -----------------------------------------------------------------------------

@pytest.mark.parametrize("line, expected", [
    ('127.0.0.1:5 - "GET /v1/events?topic=a&token=eyJ.x.y HTTP/1.1" 200',
     '127.0.0.1:5 - "GET /v1/events?topic=a&token=[redacted] HTTP/1.1" 200'),
    ("GET /v1/ws?token=hk_0123456789abcdef", "GET /v1/ws?token=[redacted]"),
    ("Authorization: Bearer eyJ.x.y-_=", "Authorization: Bearer [redacted]"),
    ("/v1/topics?access_token=abc;x=1", "/v1/topics?access_token=[redacted];x=1"),
    ("/v1/topics?mytoken=abc&b=1", "/v1/topics?mytoken=abc&b=1"),  # another parameter
    ("nothing to hide", "nothing to hide"),
])
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


@given(st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                             exclude_characters="&;#\"'"), min_size=1, max_size=80),
       st.text(max_size=40))
def test_no_query_token_survives_redaction(secret: str, before: str) -> None:
    line = redact(f"GET /v1/events?{before}&token={secret} HTTP/1.1")
    # What follows the last "token=" is the marker, whole: the secret is gone
    # (a substring check would fail for a secret such as "[", a prefix of it).
    assert line.rsplit("token=", 1)[1] == f"{REDACTED} HTTP/1.1"


def test_the_filter_redacts_messages_and_arguments() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s"', ("1.2.3.4", "GET", "/v1/ws?token=abc"), None)
    assert RedactTokens().filter(record) is True
    assert record.getMessage() == '1.2.3.4 - "GET /v1/ws?token=[redacted]"'


def test_hubbub_serve_logs_no_token(spawn_hub: Any, tmp_path: Path) -> None:
    """Finding: full tokens were in the access log. With --access-log at level info,
    requests and upgrades carrying tokens are logged without them."""
    config = tmp_path / "hubbub.toml"
    config.write_text(f'[auth]\nsecret = "{SECRET.decode()}"\n')
    proc = spawn_hub("memory://", "--config", str(config), "--access-log",
                     "--log-level", "info")
    secret = token()
    with httpx.Client(base_url=proc.url, timeout=10 * UNIT) as c:
        assert c.get(f"/v1/topics/svc.a/messages?token={secret}").status_code == 401
        assert c.get("/v1/topics/svc.a/messages", headers=bearer(secret)).status_code == 200
        with c.stream("GET", f"/v1/topics/svc.a/events?after=end&token={secret}") as r:
            assert r.status_code == 200

    async def upgrade() -> None:
        ws_url = proc.url.replace("http://", "ws://")
        async with asyncio.timeout(5 * UNIT), connect(f"{ws_url}/v1/ws?token={secret}"):
            pass

    asyncio.run(upgrade())
    proc.terminate()
    out = proc.output()
    assert "/v1/topics/svc.a/messages?token=[redacted]" in out, out
    assert secret not in out and secret.split(".")[1] not in out
