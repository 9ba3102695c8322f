"""``upload()`` behind a body size limit: 413 halves the chunk size, down to a floor.

The hub runs behind a small ASGI layer that does what nginx does with
``client_max_body_size``: a request whose ``Content-Length`` is over the
limit gets a plain-text ``413`` (after its body is read and dropped, as
nginx's lingering close lets a client read the answer); the rest pass.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hubbub.client import AsyncClient
from hubbub.client.uploads import MIN_CHUNK_SIZE
from hubbub.config import Config, UploadsConfig
from hubbub.protocol.errors import PayloadTooLarge
from hubbub.transports.app import create_app
from tests.conftest import HubServer, serve_app, store_url


class BodyLimit:
    """An ASGI app in front of ``app`` refusing bodies over ``limit`` bytes with 413."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit
        #: The Content-Length of every PATCH, and whether it passed.
        self.patches: list[tuple[int, bool]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = int(dict(scope["headers"]).get(b"content-length", b"0"))
        if scope["method"] == "PATCH":
            self.patches.append((length, length <= self.limit))
        if length <= self.limit:
            return await self.app(scope, receive, send)
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body",
                    "body": b"<html><body><h1>413 Request Entity Too Large</h1></body></html>"})


@pytest.fixture(params=["memory", "sqlite"])
async def limited(request: pytest.FixtureRequest, tmp_path: Path
                  ) -> AsyncIterator[tuple[HubServer, BodyLimit]]:
    app = create_app(store_url(request.param, tmp_path),
                     Config(uploads=UploadsConfig(dir=str(tmp_path / "uploads"))))
    proxy = BodyLimit(app, 200 * 1024)
    srv = await serve_app(proxy, app)
    try:
        yield srv, proxy
    finally:
        await srv.stop()


async def test_413_halves_the_chunk_size_until_chunks_pass(
    limited: tuple[HubServer, BodyLimit], tmp_path: Path
) -> None:
    """Default 8 MiB chunks against a 200 KiB limit: the 700 KiB chunk (all of the file)
    is refused, then halved until one passes; every later chunk is that size; the
    file arrives whole."""
    srv, proxy = limited
    data = os.urandom(700 * 1024 + 17)
    (tmp_path / "f.bin").write_bytes(data)
    async with AsyncClient(srv.url) as hub:
        result = await hub.upload(tmp_path / "f.bin", state_file=tmp_path / "s.json")
        got = await hub.http.get(result["url"])
    assert got.content == data
    refused = [n for n, ok in proxy.patches if not ok]
    passed = [n for n, ok in proxy.patches if ok]
    assert refused == [len(data), len(data) // 2]
    size = len(data) // 4
    assert passed == [size] * 4 + [len(data) - 4 * size]


async def test_413_at_the_floor_names_the_limit_to_raise(
    limited: tuple[HubServer, BodyLimit], tmp_path: Path
) -> None:
    """A limit below the floor: PayloadTooLarge naming chunk_size and the nginx setting,
    after halving down to MIN_CHUNK_SIZE."""
    srv, proxy = limited
    proxy.limit = 32 * 1024
    (tmp_path / "g.bin").write_bytes(os.urandom(300 * 1024))
    async with AsyncClient(srv.url) as hub:
        with pytest.raises(PayloadTooLarge) as info:
            await hub.upload(tmp_path / "g.bin", state_file=tmp_path / "s.json")
    assert info.value.field == "chunk_size"
    assert "client_max_body_size" in info.value.message
    assert [n for n, _ in proxy.patches] == [300 * 1024, 150 * 1024, 75 * 1024, MIN_CHUNK_SIZE]
