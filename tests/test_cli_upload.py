"""``hubbub upload`` and ``AsyncClient.upload``: resumable, with a progress bar."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.client import AsyncClient
from hubbub.config import Config, UploadsConfig
from tests.conftest import UNIT

CHUNK = 256 * 1024


class Interrupted(Exception):
    pass


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(uploads=UploadsConfig(dir=str(tmp_path / "uploads")))


async def hubbub(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubbub", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60 * UNIT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_resumes_an_interrupted_upload(hub_server: Any, client: httpx.AsyncClient,
                                                 tmp_path: Path) -> None:
    """An upload interrupted after two chunks is resumed by the next `hubbub upload`."""
    source = tmp_path / "data.bin"
    data = os.urandom(5 * CHUNK + 1000)
    source.write_bytes(data)
    state = tmp_path / "state.json"

    def stop_after_two(done: int, total: int) -> None:
        if done >= 2 * CHUNK:
            raise Interrupted

    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(Interrupted):
            await hub.upload(source, chunk_size=CHUNK, state_file=state,
                             on_progress=stop_after_two)
    assert len(json.loads(state.read_text())) == 1

    code, out, err = await hubbub("upload", str(source), "--url", hub_server.url,
                                  "--chunk-size", str(CHUNK), "--state", str(state))
    assert code == 0, err
    result = json.loads(out)
    assert result["resumed_from"] == 2 * CHUNK and result["size"] == len(data)
    assert err == ""  # the progress bar is for a terminal: piped, nothing is written
    assert json.loads(state.read_text()) == {}
    got = await client.get(result["url"])
    assert hashlib.sha256(got.content).digest() == hashlib.sha256(data).digest()
    head = await client.head(result["url"], headers={"Tus-Resumable": "1.0.0"})
    assert "filename ZGF0YS5iaW4=" in head.headers["upload-metadata"]  # data.bin


async def test_changed_file_starts_afresh(hub_server: Any, tmp_path: Path) -> None:
    """A file changed since the interrupted run gets a new upload, not a mixed one."""
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3 * CHUNK))
    state = tmp_path / "state.json"

    def stop(done: int, total: int) -> None:
        if done:
            raise Interrupted

    async with AsyncClient(hub_server.url) as hub:
        with pytest.raises(Interrupted):
            await hub.upload(source, chunk_size=CHUNK, state_file=state, on_progress=stop)
        source.write_bytes(os.urandom(3 * CHUNK))
        result = await hub.upload(source, chunk_size=CHUNK, state_file=state)
    assert result["resumed_from"] == 0


async def test_cli_upload_errors(hub_server: Any, tmp_path: Path) -> None:
    """A missing file is a usage error (2); a job queue the hub refuses is 1."""
    code, _, err = await hubbub("upload", str(tmp_path / "nope"), "--url", hub_server.url,
                                "--state", str(tmp_path / "s.json"))
    assert code == 2 and "not a file" in err
    source = tmp_path / "a.txt"
    source.write_text("hi")
    code, _, err = await hubbub("upload", str(source), "--url", hub_server.url, "--job", "x",
                                "--state", str(tmp_path / "s.json"))
    assert code == 1 and "not allowed" in err
