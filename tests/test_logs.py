"""JSON logs and request ids: ``hubbub serve --log-format json``."""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from websockets.asyncio.client import connect

from hubbub.config import Config
from hubbub.server.logs import JsonFormatter
from hubbub.transports.app import create_app
from hubbub.transports.requestid import RequestId, RequestIdFilter
from tests.conftest import UNIT, free_port, serve_app, wait_ready

HEX16 = re.compile(r"[0-9a-f]{16}")


def test_a_json_line_has_every_member() -> None:
    """time (UTC, ms), level, logger, message, request_id, and the exception."""
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("hubbub.test").makeRecord(
            "hubbub.test", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    record.request_id = "r-1"
    line = msgspec.json.decode(JsonFormatter().format(record))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    assert (line["level"], line["logger"], line["message"], line["request_id"]) == (
        "error", "hubbub.test", "failed here", "r-1")
    assert "ValueError: boom" in line["exception"]


async def test_records_made_while_serving_carry_the_request_id(
        caplog: pytest.LogCaptureFixture) -> None:
    """A record made by the request's code carries its id, the client's or a new one;
    the response echoes it; an invalid client id is replaced."""

    async def route(request: Request) -> PlainTextResponse:
        logging.getLogger("hubbub.test").warning("serving %s", request.url.path)
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/x", route)])
    caplog.handler.addFilter(RequestIdFilter())
    # The server runs a hub beside any app it serves; this app is not the hub's.
    server = await serve_app(RequestId(inner), create_app("memory://", Config()))
    try:
        async with asyncio.timeout(20 * UNIT), httpx.AsyncClient(base_url=server.url) as http:
            given = await http.get("/x", headers={"X-Request-Id": "order-42"})
            made = await http.get("/x")
            bad = await http.get("/x", headers={"X-Request-Id": "has space"})
    finally:
        await server.stop()
    assert given.headers["x-request-id"] == "order-42"
    assert HEX16.fullmatch(made.headers["x-request-id"])
    assert HEX16.fullmatch(bad.headers["x-request-id"])
    ids = [getattr(r, "request_id", None) for r in caplog.records if r.name == "hubbub.test"]
    assert ids == ["order-42", made.headers["x-request-id"], bad.headers["x-request-id"]]


@pytest.fixture
def json_hub() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "serve", "--port", str(port), "--store", "memory://",
         "--log-format", "json", "--log-level", "info", "--access-log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, proc)
    try:
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(20 * UNIT)
        if proc.stderr is not None:
            proc.stderr.close()


async def test_serve_logs_json_lines_with_request_ids(
        json_hub: tuple[str, subprocess.Popen[bytes]]) -> None:
    """Every line ``serve --log-format json`` writes is one JSON object; a request's
    access record carries its id, which the response echoes, on a publish (the
    whole-response path), a long poll and a WebSocket upgrade alike."""
    url, proc = json_hub
    async with asyncio.timeout(30 * UNIT), httpx.AsyncClient(base_url=url) as http:
        published = await http.post("/v1/topics/logs.a", json=1,
                                     headers={"X-Request-Id": "pub-1"})
        polled = await http.get("/v1/topics/logs.a/messages",
                                params={"after": "start", "wait": 1})
        async with connect(url.replace("http", "ws") + "/v1/ws",
                           additional_headers={"X-Request-Id": "ws-1"}) as ws:
            assert ws.response is not None
            upgraded = ws.response.headers["x-request-id"]
    assert published.status_code == 201 and published.headers["x-request-id"] == "pub-1"
    assert HEX16.fullmatch(polled.headers["x-request-id"])
    assert upgraded == "ws-1"
    proc.terminate()
    assert proc.wait(20 * UNIT) == 0
    assert proc.stderr is not None
    lines = [msgspec.json.decode(line) for line in proc.stderr.read().splitlines()]
    assert lines and all(set(line) >= {"time", "level", "logger", "message", "request_id"}
                         for line in lines)
    with_ids = {line["request_id"] for line in lines if line["request_id"]}
    assert {"pub-1", polled.headers["x-request-id"]} <= with_ids
