"""The tus 1.0.0 door over a real server, on every engine.

Every tus error status is provoked by a request a client could really send.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hubbub.config import Config, UploadsConfig
from hubbub.protocol.tus import format_checksum, format_metadata
from tests.conftest import UNIT

MAX_SIZE = 1 << 20
TUS = {"Tus-Resumable": "1.0.0"}
STREAM = {**TUS, "Content-Type": "application/offset+octet-stream"}


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(uploads=UploadsConfig(dir=str(tmp_path / "uploads"), max_size=MAX_SIZE,
                                        jobs=("allowed",)))


async def create(client: httpx.AsyncClient, length: int | None, **headers: str) -> str:
    h = {**TUS, **headers}
    if length is None:
        h["Upload-Defer-Length"] = "1"
    else:
        h["Upload-Length"] = str(length)
    r = await client.post("/v1/uploads/", headers=h)
    assert r.status_code == 201, r.text
    return r.headers["location"]


async def patch(client: httpx.AsyncClient, url: str, offset: int, data: bytes,
                **headers: str) -> httpx.Response:
    return await client.patch(url, content=data,
                              headers={**STREAM, "Upload-Offset": str(offset), **headers})


async def head(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.head(url, headers=TUS)


def checksum(algorithm: str, data: bytes) -> str:
    return format_checksum(algorithm, hashlib.new(algorithm, data).digest())


async def test_options_lists_the_protocol(client: httpx.AsyncClient) -> None:
    """OPTIONS answers without Tus-Resumable and names version, extensions, limits."""
    r = await client.options("/v1/uploads/")
    assert r.status_code == 204
    assert r.headers["tus-version"] == "1.0.0"
    assert set(r.headers["tus-extension"].split(",")) == {
        "creation", "creation-with-upload", "creation-defer-length", "termination",
        "checksum", "expiration"}
    assert r.headers["tus-max-size"] == str(MAX_SIZE)
    assert {"sha1", "md5", "sha256"} <= set(r.headers["tus-checksum-algorithm"].split(","))
    assert "Upload-Offset" in r.headers["access-control-expose-headers"]


@pytest.mark.smoke
@pytest.mark.sockets
async def test_upload_in_chunks_is_byte_identical(client: httpx.AsyncClient) -> None:
    """Chunks PATCHed in order make the file; HEAD and GET tell offset and bytes."""
    data = os.urandom(300_000)
    url = await create(client, len(data), **{"Upload-Metadata": format_metadata(
        {"filename": "a.bin"})})
    assert url.startswith("/v1/uploads/")
    r = await head(client, url)
    assert (r.status_code, r.headers["upload-offset"], r.headers["upload-length"]) == (
        200, "0", str(len(data)))
    assert r.headers["cache-control"] == "no-store"
    assert "upload-expires" in r.headers
    assert r.headers["upload-metadata"] == format_metadata({"filename": "a.bin"})
    for at in range(0, len(data), 100_000):
        r = await patch(client, url, at, data[at:at + 100_000])
        assert r.status_code == 204, r.text
        assert r.headers["upload-offset"] == str(min(at + 100_000, len(data)))
        assert r.headers["tus-resumable"] == "1.0.0"
    r = await head(client, url)
    assert r.headers["upload-offset"] == str(len(data))
    got = await client.get(url)
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()
    assert 'filename="a.bin"' in got.headers["content-disposition"]


async def test_creation_with_upload(client: httpx.AsyncClient) -> None:
    """A POST with a body creates the upload and stores the body at once."""
    r = await client.post("/v1/uploads/", content=b"hello", headers={
        **STREAM, "Upload-Length": "8", "Upload-Checksum": checksum("md5", b"hello")})
    assert r.status_code == 201, r.text
    assert r.headers["upload-offset"] == "5"
    url = r.headers["location"]
    assert (await patch(client, url, 5, b"!!!")).headers["upload-offset"] == "8"
    assert (await client.get(url)).content == b"hello!!!"


async def test_creation_with_bad_upload_leaves_nothing(client: httpx.AsyncClient,
                                                       hub_server: Any) -> None:
    """A creation whose body fails its checksum answers 460 and keeps no upload."""
    r = await client.post("/v1/uploads/", content=b"hello", headers={
        **STREAM, "Upload-Length": "5", "Upload-Checksum": checksum("md5", b"HELLO")})
    assert r.status_code == 460
    assert os.listdir(hub_server.hub.config.uploads.dir) == []


async def test_defer_length(client: httpx.AsyncClient) -> None:
    """A deferred length is said by HEAD, set by a later PATCH, then enforced."""
    url = await create(client, None)
    r = await head(client, url)
    assert r.headers["upload-defer-length"] == "1" and "upload-length" not in r.headers
    assert (await patch(client, url, 0, b"abc")).headers["upload-offset"] == "3"
    r = await patch(client, url, 3, b"de", **{"Upload-Length": "5"})
    assert r.status_code == 204 and r.headers["upload-offset"] == "5"
    r = await head(client, url)
    assert r.headers["upload-length"] == "5" and "upload-expires" not in r.headers
    assert (await client.get(url)).content == b"abcde"


async def test_defer_length_cannot_change(client: httpx.AsyncClient) -> None:
    """Upload-Length, once known, cannot be changed by a PATCH (400)."""
    url = await create(client, 10)
    r = await patch(client, url, 0, b"abc", **{"Upload-Length": "11"})
    assert r.status_code == 400 and r.json()["field"] == "Upload-Length"


async def test_termination(client: httpx.AsyncClient, hub_server: Any) -> None:
    """DELETE removes the upload and its bytes; it is then unknown."""
    url = await create(client, 10)
    await patch(client, url, 0, b"12345")
    path = hub_server.hub.uploads.path(url.rsplit("/", 1)[1])
    assert path.exists()
    r = await client.delete(url, headers=TUS)
    assert r.status_code == 204 and r.headers["tus-resumable"] == "1.0.0"
    assert not path.exists()
    assert (await head(client, url)).status_code == 404
    assert (await client.delete(url, headers=TUS)).status_code == 404


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256", "sha512"])
async def test_checksums(client: httpx.AsyncClient, algorithm: str) -> None:
    """A matching checksum stores the body; a mismatch answers 460 and stores nothing."""
    url = await create(client, 6)
    r = await patch(client, url, 0, b"abc", **{"Upload-Checksum": checksum(algorithm, b"abd")})
    assert r.status_code == 460 and r.json()["code"] == "checksum-mismatch"
    assert r.headers["tus-resumable"] == "1.0.0"
    assert (await head(client, url)).headers["upload-offset"] == "0"
    r = await patch(client, url, 0, b"abc", **{"Upload-Checksum": checksum(algorithm, b"abc")})
    assert r.status_code == 204 and r.headers["upload-offset"] == "3"


async def test_unsupported_checksum_algorithm_is_400(client: httpx.AsyncClient) -> None:
    url = await create(client, 3)
    r = await patch(client, url, 0, b"abc", **{"Upload-Checksum": "crc32 AAAAAA=="})
    assert r.status_code == 400 and r.json()["field"] == "Upload-Checksum"


async def test_offset_mismatch_is_409(client: httpx.AsyncClient) -> None:
    """A PATCH at another offset than the upload's is 409 and says the right one."""
    url = await create(client, 10)
    await patch(client, url, 0, b"abc")
    for wrong in (0, 5):
        r = await patch(client, url, wrong, b"xyz")
        assert r.status_code == 409 and r.json()["offset"] == 3
    assert (await client.get(url)).status_code == 409  # not complete yet


@pytest.mark.parametrize("version", ["0.2.2", "2.0.0", None])
async def test_wrong_version_is_412(client: httpx.AsyncClient, version: str | None) -> None:
    """A Tus-Resumable other than 1.0.0 (or none) is 412 with Tus-Version."""
    h = {"Upload-Length": "5"} | ({"Tus-Resumable": version} if version else {})
    r = await client.post("/v1/uploads/", headers=h)
    assert r.status_code == 412 and r.headers["tus-version"] == "1.0.0"
    assert r.headers["content-type"] == "application/problem+json"


async def test_too_large_is_413(client: httpx.AsyncClient) -> None:
    """Over Tus-Max-Size at creation, or past the upload's length in a PATCH: 413."""
    r = await client.post("/v1/uploads/", headers={**TUS, "Upload-Length": str(MAX_SIZE + 1)})
    assert r.status_code == 413
    url = await create(client, 4)
    assert (await patch(client, url, 0, b"12345")).status_code == 413
    deferred = await create(client, None)

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length to check first
        for _ in range(MAX_SIZE // 65536 + 2):
            yield bytes(65536)

    r = await client.patch(deferred, content=endless(), headers={**STREAM, "Upload-Offset": "0"})
    assert r.status_code == 413
    assert (await head(client, url)).headers["upload-offset"] == "0"


async def test_unknown_upload_is_404(client: httpx.AsyncClient) -> None:
    for url in ("/v1/uploads/" + "0" * 32, "/v1/uploads/..%2f..%2fetc", "/v1/uploads/x"):
        assert (await head(client, url)).status_code == 404
        assert (await patch(client, url, 0, b"a")).status_code == 404


async def test_routing_errors_still_speak_tus(client: httpx.AsyncClient) -> None:
    """A path or method the door has no route for still answers as tus does."""
    url = await create(client, 3)
    for method, path, status in [("PUT", url, 405), ("GET", "/v1/uploads/a/b", 404),
                                 ("PATCH", "/v1/uploads/", 405)]:
        r = await client.request(method, path, headers={"Tus-Resumable": "1.0.0"})
        assert r.status_code == status, (method, path)
        assert r.headers["Tus-Resumable"] == "1.0.0"
        assert r.headers["content-type"] == "application/problem+json"


async def test_wrong_content_type_is_415(client: httpx.AsyncClient) -> None:
    url = await create(client, 3)
    r = await client.patch(url, content=b"abc", headers={
        **TUS, "Upload-Offset": "0", "Content-Type": "application/octet-stream"})
    assert r.status_code == 415
    r = await client.post("/v1/uploads/", content=b"abc", headers={
        **TUS, "Upload-Length": "3", "Content-Type": "text/plain"})
    assert r.status_code == 415


async def test_bad_headers_are_400(client: httpx.AsyncClient) -> None:
    """Malformed tus headers are refused with a problem naming the header."""
    cases = [
        {"Upload-Length": "-1"}, {"Upload-Length": "1e3"}, {},
        {"Upload-Length": "3", "Upload-Defer-Length": "1"}, {"Upload-Defer-Length": "0"},
        {"Upload-Length": "3", "Upload-Metadata": "key not-base64!"},
        {"Upload-Length": "3", "Upload-Metadata": "a YQ==,a YQ=="},
        {"Upload-Length": "3", "Upload-Metadata": format_metadata({"job": "forbidden"})},
    ]
    for h in cases:
        r = await client.post("/v1/uploads/", headers={**TUS, **h})
        assert r.status_code == 400, (h, r.text)
        assert r.json()["field"].startswith("Upload-")
    url = await create(client, 3)
    for offset in ("", "-1", "x", "99999999999999999999"):
        r = await client.patch(url, content=b"a", headers={**STREAM, "Upload-Offset": offset})
        assert r.status_code == 400


async def test_method_override(client: httpx.AsyncClient) -> None:
    """POST with X-HTTP-Method-Override does what PATCH and DELETE do."""
    url = await create(client, 3)
    r = await client.post(url, content=b"abc", headers={
        **STREAM, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"})
    assert r.status_code == 204 and r.headers["upload-offset"] == "3"
    r = await client.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert r.status_code == 204
    assert (await head(client, url)).status_code == 404


async def test_progress_is_a_topic(client: httpx.AsyncClient) -> None:
    """uploads.<id> tells created, progress and completed, readable by any door."""
    url = await create(client, 4)
    upload_id = url.rsplit("/", 1)[1]
    await patch(client, url, 0, b"ab")
    await patch(client, url, 2, b"cd")
    r = await client.get(f"/v1/topics/uploads.{upload_id}/messages")
    events = [(m["data"]["event"], m["data"]["offset"]) for m in r.json()["messages"]]
    assert events == [("created", 0), ("progress", 2), ("progress", 4), ("completed", 4)]


async def until_locked(path: Path) -> None:
    """Return once someone (the hub, in this process) holds the file's flock."""
    while True:
        with path.open("rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return
            fcntl.flock(f, fcntl.LOCK_UN)
        await asyncio.sleep(0.01)


async def test_second_writer_is_locked_out(client: httpx.AsyncClient, hub_server: Any) -> None:
    """While one PATCH is writing, another on the same upload is refused with 423."""
    url = await create(client, 10)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"12345"
        started.set()
        await release.wait()
        yield b"67890"

    async with hub_server.client() as other:
        first = asyncio.create_task(
            other.patch(url, content=slow(), headers={**STREAM, "Upload-Offset": "0"}))
        await asyncio.wait_for(started.wait(), 5 * UNIT)
        await asyncio.wait_for(until_locked(hub_server.hub.uploads.path(url[-32:])), 5 * UNIT)
        r = await patch(client, url, 0, b"abcdefghij")
        assert r.status_code == 423 and r.json()["code"] == "locked"
        assert (await client.delete(url, headers=TUS)).status_code == 423
        release.set()
        r = await asyncio.wait_for(first, 5 * UNIT)
    assert r.status_code == 204 and r.headers["upload-offset"] == "10"
    assert (await client.get(url)).content == b"1234567890"


@pytest.mark.sockets
async def test_interrupted_patch_keeps_what_arrived(client: httpx.AsyncClient,
                                                    hub_server: Any) -> None:
    """A client that hangs up mid-body keeps every byte the hub received (no checksum)."""
    url = await create(client, 200_000)
    port = int(hub_server.url.rsplit(":", 1)[1])
    sent = os.urandom(70_000)
    request = (f"PATCH {url} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n"
               "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
               "Content-Length: 200000\r\n\r\n").encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request + sent)
    await writer.drain()
    # Half-close: the hub reads every byte sent, then the end of the stream.
    writer.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
    writer.close()
    async with asyncio.timeout(5 * UNIT):
        while (await head(client, url)).headers["upload-offset"] != str(len(sent)):
            await asyncio.sleep(0.05)
    rest = os.urandom(200_000 - len(sent))
    assert (await patch(client, url, len(sent), rest)).status_code == 204
    assert (await client.get(url)).content == sent + rest


async def test_expired_is_410(engine: str, tmp_path: Path) -> None:
    """An upload past its expiry answers 410 to HEAD and PATCH."""
    from tests.conftest import start_server, store_url

    config = Config(uploads=UploadsConfig(dir=str(tmp_path / "up"), expiration=0.3))
    srv = await start_server(store_url(engine, tmp_path), config)
    try:
        async with srv.client() as client:
            url = await create(client, 10)
            assert "upload-expires" in (await patch(client, url, 0, b"abc")).headers
            await asyncio.sleep(0.5)
            assert (await head(client, url)).status_code == 410
            r = await patch(client, url, 3, b"def")
            assert r.status_code == 410 and r.json()["code"] == "upload-expired"
    finally:
        await srv.stop()


async def test_location_under_a_mount_prefix(tmp_path: Path) -> None:
    """Mounted at /hub, the Location names /hub/v1/uploads/<id>, and it works."""
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from hubbub.transports.app import create_app

    hub_app = create_app("memory://", Config(uploads=UploadsConfig(dir=str(tmp_path))))
    app = Starlette(routes=[Mount("/hub", hub_app)])
    async with hub_app.state.hub, httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost") as client:
        r = await client.post("/hub/v1/uploads/", headers={**TUS, "Upload-Length": "2"})
        assert r.headers["location"].startswith("/hub/v1/uploads/")
        r = await patch(client, r.headers["location"], 0, b"ok")
        assert r.status_code == 204


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=80), st.text(max_size=40), st.text(max_size=30))
async def test_arbitrary_headers_never_break_the_hub(
    client: httpx.AsyncClient, metadata: str, check: str, offset: str
) -> None:
    """Any header text gets a 2xx or a 4xx problem, never a 5xx."""
    def clean(text: str) -> str:  # what an HTTP client can put in a header at all
        return "".join(c for c in text if " " <= c <= "~").strip()

    r = await client.post("/v1/uploads/", headers={
        **TUS, "Upload-Length": "3", "Upload-Metadata": clean(metadata)})
    assert r.status_code in (201, 400), r.text
    if r.status_code == 201:
        r = await patch(client, r.headers["location"], 0, b"abc", **{
            "Upload-Checksum": clean(check) or "x", "Upload-Offset": clean(offset) or "0"})
        assert r.status_code in (204, 400, 409, 460), r.text


def test_metadata_values_roundtrip() -> None:
    """What format_metadata writes, the hub hands back verbatim in HEAD."""
    header = format_metadata({"filename": "naïve.txt", "empty": ""})
    assert header.split(",")[1] == "empty"
    assert base64.b64decode(header.split(",")[0].split(" ")[1]).decode() == "naïve.txt"


@pytest.fixture
def jobs_hub(hub_server: Any) -> Any:
    return hub_server.hub


async def test_completion_starts_one_job(client: httpx.AsyncClient, jobs_hub: Any) -> None:
    """Metadata job=<allowed queue> submits one job on completion, keyed by the upload id,
    and says so on the progress topic; a retried completion starts no second one."""
    from dataclasses import replace

    url = await create(client, 3, **{"Upload-Metadata": format_metadata(
        {"job": "allowed", "filename": "x.txt"})})
    upload_id = url.rsplit("/", 1)[1]
    assert (await patch(client, url, 0, b"abc")).status_code == 204
    r = await client.get(f"/v1/topics/uploads.{upload_id}/messages")
    jobs = [m["data"] for m in r.json()["messages"] if m["data"]["event"] == "job"]
    assert len(jobs) == 1 and jobs[0]["queue"] == "allowed"
    job_id = jobs[0]["job"]
    assert (await jobs_hub.jobs.get(job_id)).id == job_id
    await head(client, url)  # the job is recorded: nothing is submitted again
    up = await jobs_hub.uploads.get(upload_id)
    assert up.job == job_id
    # A completion retried after a crash that lost the job id: the key finds the same job.
    again = await jobs_hub.uploads.start_job(replace(up, job=None))
    assert again.job == job_id


async def test_two_nodes_one_writer(tmp_path: Path) -> None:
    """Two nodes on one Redis and one upload directory: while node A writes an
    upload, node B refuses a PATCH of it (423), and B answers HEAD with A's offset."""
    from tests.conftest import session_redis, start_server

    store = session_redis().store()
    config = Config(uploads=UploadsConfig(dir=str(tmp_path / "shared")))
    a, b = await start_server(store, config), await start_server(store, config)
    started, release = asyncio.Event(), asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"12345"
        started.set()
        await release.wait()
        yield b"67890"

    try:
        async with a.client() as ca, b.client() as cb:
            url = await create(ca, 10)
            first = asyncio.create_task(
                ca.patch(url, content=slow(), headers={**STREAM, "Upload-Offset": "0"}))
            await asyncio.wait_for(started.wait(), 5 * UNIT)
            await asyncio.wait_for(until_locked(a.hub.uploads.path(url[-32:])), 5 * UNIT)
            r = await patch(cb, url, 0, b"abcdefghij")
            assert r.status_code == 423
            release.set()
            assert (await asyncio.wait_for(first, 5 * UNIT)).status_code == 204
            assert (await head(cb, url)).headers["upload-offset"] == "10"
            assert (await cb.get(url)).content == b"1234567890"
    finally:
        await a.stop()
        await b.stop()
