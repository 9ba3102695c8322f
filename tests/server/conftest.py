"""A hub on hubbub's own server with small limits and timeouts, and raw
socket helpers: the conformance tests of the layer read the bytes a client
library would hide."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from hubbub.config import Config
from hubbub.transports.app import create_app
from tests.conftest import UNIT, HubServer, serve_app

#: The layer's settings in these tests: every timeout a fraction of a second.
SETTINGS = {
    "head_timeout": 0.5 * UNIT, "body_timeout": 0.5 * UNIT, "keepalive_timeout": 0.5 * UNIT,
    "linger_timeout": 1.0 * UNIT, "max_connections": 20, "max_header_bytes": 4096,
    "write_deadline": 0.5 * UNIT, "send_buffer": 16 * 1024,
    "ws_ping_interval": 30.0, "ws_ping_timeout": 1.0 * UNIT,
}


@pytest.fixture
async def layer() -> AsyncIterator[HubServer]:
    app = create_app("memory://", Config())
    srv = await serve_app(app, app, ws_max_size=Config().max_message_size + 64 * 1024,
                          **SETTINGS)
    try:
        yield srv
    finally:
        await srv.stop()


class Raw:
    """A raw TCP connection to the server under test."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, srv: HubServer) -> Raw:
        port = int(srv.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """One response: status, headers (lower-case names), body (by content-length)."""
        async with asyncio.timeout(5 * UNIT):
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                if line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            body = await self.reader.readexactly(length) if length else b""
        return status, headers, body

    async def at_end(self) -> bool:
        """Whether the server ends the connection (EOF) within a few seconds."""
        async with asyncio.timeout(5 * UNIT):
            try:
                rest = await self.reader.read()
            except ConnectionResetError:
                return True
        return rest == b""

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def connect(layer: HubServer) -> AsyncIterator[Callable[[], Awaitable[Raw]]]:
    """Open raw connections to ``layer``; every one is closed after the test."""
    opened: list[Raw] = []

    async def opener() -> Raw:
        raw = await Raw.open(layer)
        opened.append(raw)
        return raw

    yield opener
    for raw in opened:
        raw.close()
        with contextlib.suppress(OSError):
            await raw.writer.wait_closed()
