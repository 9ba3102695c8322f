"""HTTP/2 over TLS serves every HTTP door: curl, nghttp, httpx."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest
from httpx_sse import aconnect_sse

from ..conftest import UNIT
from .conftest import H2Hub

pytestmark = pytest.mark.timeout(60 * UNIT)


async def run(*cmd: str) -> tuple[int, str, str]:
    """Run a command without blocking the loop the server runs in."""
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(30 * UNIT):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_curl_publishes_and_reads_back(h2_hub: H2Hub) -> None:
    """curl --http2 publishes (HTTP/2 201) and reads the message back."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    rc, out, err = await run("curl", "-sS", "-k", "--http2", "-i", "-X", "POST",
                             "-H", "content-type: application/json", "--data", '{"n": 1}',
                             f"{h2_hub.url}/v1/topics/chat.a")
    assert rc == 0, err
    assert out.startswith("HTTP/2 201"), out
    rc, out, err = await run("curl", "-sS", "-k", "--http2",
                             f"{h2_hub.url}/v1/topics/chat.a/messages")
    assert rc == 0, err
    assert [m["data"] for m in json.loads(out)["messages"]] == [{"n": 1}]


async def test_httpx_doors_over_one_connection(h2_hub: H2Hub) -> None:
    """Publish, short poll, long poll and SSE share one HTTP/2 connection."""
    async with h2_hub.client() as client:
        r = await client.post("/v1/topics/chat.b", json={"n": 1})
        assert (r.status_code, r.http_version) == (201, "HTTP/2")
        cursor = r.json()["cursor"]
        r = await client.get("/v1/topics/chat.b/messages", params={"after": "start"})
        assert [m["data"] for m in r.json()["messages"]] == [{"n": 1}]
        long_poll = asyncio.ensure_future(client.get(
            "/v1/topics/chat.b/messages", params={"after": cursor, "wait": 10}))
        async with aconnect_sse(client, "GET", "/v1/topics/chat.b/events",
                                params={"after": cursor}) as sse:
            assert sse.response.http_version == "HTTP/2"
            events = sse.aiter_sse()
            await asyncio.sleep(0)
            r = await client.post("/v1/topics/chat.b", json={"n": 2})
            assert r.status_code == 201
            async for event in events:
                if event.event == "message":
                    assert json.loads(event.data)["data"] == {"n": 2}
                    break
        r = await long_poll
        assert [m["data"] for m in r.json()["messages"]] == [{"n": 2}]
    assert len(h2_hub.protocols) == 1


async def test_nghttp_gets(h2_hub: H2Hub) -> None:
    """nghttp (nghttp2's client) GETs a page of messages over HTTP/2."""
    if shutil.which("nghttp") is None:
        pytest.skip("nghttp is not installed (Debian: nghttp2-client)")
    async with h2_hub.client() as client:
        assert (await client.post("/v1/topics/chat.n", json="hi")).status_code == 201
    rc, out, err = await run("nghttp", "-v", f"{h2_hub.url}/v1/topics/chat.n/messages")
    assert rc == 0, out + err
    assert ":status: 200" in out
    assert '"data":"hi"' in out
    assert "SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100" in out


async def test_tus_upload_over_http2(h2_hub: H2Hub) -> None:
    """A tus upload (create, two PATCHes, HEAD, download) works over HTTP/2."""
    tus = {"Tus-Resumable": "1.0.0"}
    async with h2_hub.client() as client:
        r = await client.post("/v1/uploads/", headers={**tus, "Upload-Length": "11"})
        assert (r.status_code, r.http_version) == (201, "HTTP/2"), r.text
        location = r.headers["location"]
        for offset, chunk in ((0, b"hello"), (5, b" world")):
            r = await client.patch(location, content=chunk, headers={
                **tus, "Upload-Offset": str(offset),
                "Content-Type": "application/offset+octet-stream"})
            assert r.status_code == 204, r.text
        r = await client.head(location, headers=tus)
        assert r.headers["upload-offset"] == "11"
        assert (await client.get(location)).content == b"hello world"


async def test_jobs_and_dashboard_over_http2(h2_hub: H2Hub) -> None:
    """The jobs door answers 202 and its status; the dashboard and its
    script load, all over HTTP/2."""
    async with h2_hub.client() as client:
        r = await client.post("/v1/jobs/thumbs", json={"file": "a.png"})
        assert (r.status_code, r.http_version) == (202, "HTTP/2"), r.text
        r = await client.get(r.headers["location"])
        assert r.status_code == 200 and r.json()["state"] == "queued"
        page = await client.get("/")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        script = await client.get("/dashboard/app.js")
        assert script.status_code == 200 and len(script.content) > 1000
