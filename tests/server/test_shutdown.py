"""The drain of hubbub's server: a stream whose client reads nothing does not
hold the shutdown up (hubbub.server.run, step 2)."""

from __future__ import annotations

import asyncio
import signal
import socket

from hubbub.config import Config
from hubbub.core import PublishItem
from hubbub.server.http1 import HttpProtocol
from hubbub.transports.app import create_app
from tests.conftest import UNIT, serve_app


async def test_a_drain_cuts_off_a_stalled_sse_stream_at_once() -> None:
    """With a drain timeout far beyond the test's, a stalled SSE reader (its
    socket full, its write deadline far off) is cut off and the server exits."""
    app = create_app("memory://", Config())
    srv = await serve_app(app, app, drain_timeout=120.0, write_deadline=120.0,
                          send_buffer=16 * 1024)
    state = srv.server.state
    assert state is not None
    port = int(srv.url.rsplit(":", 1)[1])
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(b"GET /v1/topics/stop.s/events?after=start HTTP/1.1\r\nHost: localhost\r\n\r\n")
        async with asyncio.timeout(5 * UNIT):
            await reader.readuntil(b"event: ready")
        writer.transport.pause_reading()

        def stalled() -> bool:
            return any(isinstance(c, HttpProtocol) and c.bytes_taken() >= 0
                       for c in state.connections)

        payload = b'"' + b"x" * 60_000 + b'"'
        async with asyncio.timeout(10 * UNIT):
            while not stalled():
                await srv.hub.publish_batch([PublishItem("stop.s", payload)] * 4)
                await asyncio.sleep(0.05)
        srv.server.handle_exit(signal.SIGTERM, None)
        async with asyncio.timeout(10 * UNIT):
            await srv.task
        assert not state.connections and not srv.server.forced
    finally:
        writer.close()
