"""Crash safety of uploads: ``kill -9`` during a PATCH, restart, resume.

After a SIGKILL at any moment the offset HEAD reports counts bytes that are
all stored intact, and the upload resumes from there to a byte-identical file
(:mod:`hubbub.core.uploads`, invariant "recorded offset is truth").
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.core.uploads import CHECKPOINT
from tests.conftest import UNIT

TUS = {"Tus-Resumable": "1.0.0"}
SIZE = 3 * CHECKPOINT + 777_777
PIECE = 128 * 1024


async def offset_of(client: httpx.AsyncClient, url: str) -> int:
    r = await client.head(url, headers=TUS)
    assert r.status_code == 200, r.text
    return int(r.headers["upload-offset"])


async def patch_until_killed(hub: Any, url: str, data: bytes, *, kill_after: int,
                             committed_first: bool, checksum: str | None = None) -> int:
    """Stream a PATCH of ``data`` and SIGKILL the hub mid-body; returns the bytes sent."""
    port = int(hub.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = f"Upload-Checksum: {checksum}\r\n" if checksum else ""
    writer.write((f"PATCH {url} HTTP/1.1\r\nHost: localhost\r\nTus-Resumable: 1.0.0\r\n"
                  "Content-Type: application/offset+octet-stream\r\n"
                  f"Upload-Offset: 0\r\n{extra}"
                  f"Content-Length: {len(data)}\r\n\r\n").encode())
    sent = 0
    while sent < kill_after:
        writer.write(data[sent:sent + PIECE])
        await writer.drain()
        sent += PIECE
    if committed_first:  # go on until a checkpoint is committed, then kill with more in flight
        async with httpx.AsyncClient(base_url=hub.url, timeout=5 * UNIT) as probe, \
                asyncio.timeout(20 * UNIT):
            while await offset_of(probe, url) == 0:
                writer.write(data[sent:sent + PIECE])
                await writer.drain()
                sent += PIECE
                await asyncio.sleep(0.01)
        writer.write(data[sent:sent + PIECE])
        await writer.drain()
        sent += PIECE
    hub.kill()
    writer.close()
    return sent


@pytest.mark.parametrize(("kill_after", "committed_first", "checksum"), [
    pytest.param(PIECE, False, False, id="before-a-checkpoint"),
    pytest.param(CHECKPOINT - 3 * PIECE, True, False, id="after-a-checkpoint"),
    pytest.param(2 * CHECKPOINT + 5 * PIECE, False, True, id="checksummed"),
    pytest.param(random.randrange(1, SIZE // PIECE - 1) * PIECE, False, False, id="anywhere"),
])
async def test_sigkill_during_patch_then_resume(
    spawn_hub: Any, tmp_path: Path, kill_after: int, committed_first: bool, checksum: bool
) -> None:
    """After kill -9 mid-PATCH, HEAD's offset counts intact bytes, and the upload
    resumes from it to a byte-identical file."""
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    data = os.urandom(SIZE)
    hub = spawn_hub(store)
    async with httpx.AsyncClient(base_url=hub.url, timeout=10 * UNIT) as c:
        r = await c.post("/v1/uploads/", headers={**TUS, "Upload-Length": str(SIZE)})
        url = r.headers["location"]
    digest = None
    if checksum:
        digest = "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode()
    sent = await patch_until_killed(hub, url, data, kill_after=kill_after,
                                    committed_first=committed_first, checksum=digest)

    hub = spawn_hub(store)
    async with httpx.AsyncClient(base_url=hub.url, timeout=30 * UNIT) as c:
        offset = await offset_of(c, url)
        assert 0 <= offset <= sent
        if committed_first:
            assert offset > 0
        if checksum:
            assert offset == 0  # invariant "checksummed bodies commit whole"
        file = tmp_path / "uploads" / url.rsplit("/", 1)[1]
        stored = await asyncio.to_thread(file.read_bytes)
        assert stored[:offset] == data[:offset]
        r = await c.patch(url, content=data[offset:], headers={
            **TUS, "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"})
        assert r.status_code == 204, r.text
        got = (await c.get(url)).content
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
