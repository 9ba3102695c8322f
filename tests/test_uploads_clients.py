"""Real tus clients against a real hub: tuspy (Python) and tus-js-client (Node).

Each uploads part of a file, is interrupted, then a fresh run of the client
finds the upload it remembered and resumes it; the hub's file must be
byte-identical to the source (sha256). tus-js-client is installed by ``npm
ci`` from ``tests/js/package-lock.json`` on first use (git-ignored
``node_modules``); without Node the test is skipped.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from tusclient import client as tus_client
from tusclient.storage.filestorage import FileStorage

from hubbub.config import Config, UploadsConfig
from tests.conftest import UNIT

JS_DIR = Path(__file__).parent / "js"
SIZE = 3 * 1024 * 1024 + 12345
CHUNK = 512 * 1024


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(uploads=UploadsConfig(dir=str(tmp_path / "uploads")))


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture(scope="session")
def tus_js() -> Path:
    """tests/js with its node_modules installed (npm ci, once)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed")
    if not (JS_DIR / "node_modules" / "tus-js-client").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=JS_DIR,
                       check=True, timeout=300)
    return JS_DIR


class _Stream(io.BytesIO):
    """tuspy closes the stream it is given after its first read; this one stays usable."""

    def close(self) -> None:
        pass


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def events(client: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    upload_id = url.rstrip("/").rsplit("/", 1)[1]
    r = await client.get(f"/v1/topics/uploads.{upload_id}/messages", params={"limit": 1000})
    return [m["data"] for m in r.json()["messages"]]


async def test_tuspy_interrupted_and_resumed(hub_server: Any, client: httpx.AsyncClient,
                                             source: Path, tmp_path: Path) -> None:
    """tuspy uploads two chunks, stops; a new uploader resumes from its URL store."""
    store = str(tmp_path / "tuspy-urls.json")
    endpoint = hub_server.url + "/v1/uploads/"

    def run(chunks: int | None) -> tuple[str, int]:
        """One run of a program using tuspy: its own URL store, the file read afresh."""
        storage = FileStorage(store)
        try:
            uploader = tus_client.TusClient(endpoint).uploader(
                file_stream=_Stream(source.read_bytes()), chunk_size=CHUNK, store_url=True,
                url_storage=storage, metadata={"filename": "source.bin"},
                upload_checksum=True)
            resumed_at = uploader.offset  # a stored URL's offset is asked with a HEAD
            if chunks is None:
                uploader.upload()
            else:
                for _ in range(chunks):
                    uploader.upload_chunk()
            return str(uploader.url), resumed_at
        finally:
            storage._db.close()

    url, started_at = await asyncio.to_thread(run, 2)
    assert started_at == 0
    again, resumed_at = await asyncio.to_thread(run, None)
    assert again == url and resumed_at == 2 * CHUNK
    got = await client.get(url)
    assert sha256(got.content) == sha256(await asyncio.to_thread(source.read_bytes))
    kinds = [e["event"] for e in await events(client, url)]
    assert kinds.count("created") == 1 and kinds[-1] == "completed"


async def run_js(tus_js: Path, *args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        "node", str(tus_js / "tus-upload.mjs"), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60 * UNIT)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_tus_js_client_interrupted_and_resumed(
    hub_server: Any, client: httpx.AsyncClient, source: Path, tmp_path: Path, tus_js: Path
) -> None:
    """tus-js-client aborts after about a third; its next run finds and resumes it."""
    endpoint = hub_server.url + "/v1/uploads/"
    storage = str(tmp_path / "tus-js-urls.json")
    first = await run_js(tus_js, endpoint, str(source), storage, str(CHUNK), str(SIZE // 3))
    assert first["done"] is False and 0 < first["offset"] < SIZE
    r = await client.head(first["url"], headers={"Tus-Resumable": "1.0.0"})
    assert int(r.headers["upload-offset"]) == first["offset"]
    second = await run_js(tus_js, endpoint, str(source), storage, str(CHUNK))
    assert second["done"] is True and second["resumed"] is True
    assert second["url"] == first["url"]
    got = await client.get(first["url"])
    assert sha256(got.content) == sha256(await asyncio.to_thread(source.read_bytes))
    kinds = [e["event"] for e in await events(client, first["url"])]
    assert kinds.count("created") == 1 and kinds[-1] == "completed"
