"""What every protocol of ``hubbub serve`` needs of ASGI: scopes, the status
line, whole responses as bytes, the server's own problem documents, the
lifespan. Shared by HTTP/1.1 (:mod:`hubbub.server.http1`), WebSocket
(:mod:`hubbub.server.websocket`) and HTTP/2 (:mod:`hubbub.server.http2`).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import msgspec

from ..transports.extensions import RESPOND

log = logging.getLogger("hubbub.server")

#: ASGI 3.0; spec 2.3: a send after the client left is dropped (not raised),
#: and a streaming response learns the end from ``http.disconnect``.
ASGI = {"version": "3.0", "spec_version": "2.3"}
PROBLEM_TYPE = "https://hubbub.dev/problems/"

_encode = msgspec.json.Encoder().encode


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase.encode())


#: ``HTTP/1.1 200 OK\r\n`` and the rest, made once.
STATUS_LINES = {status: _status_line(status) for status in range(100, 600)}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    return line if line is not None else _status_line(status)


def split_target(target: bytes) -> tuple[str, bytes, bytes]:
    """(decoded path, raw path, query string) of a request target."""
    raw, _, query = target.partition(b"?")
    raw = raw.partition(b"#")[0]
    return unquote(raw.decode("latin-1")), raw, query


def http_scope(
    state: Any, *, method: str, target: bytes, headers: list[tuple[bytes, bytes]],
    http_version: str, scheme: str, server: tuple[str, int] | None,
    client: tuple[str, int] | None, responder: object | None,
) -> dict[str, Any]:
    """The ASGI ``http`` scope of a request (``headers`` lower-cased names)."""
    path, raw_path, query = split_target(target)
    scope: dict[str, Any] = {
        "type": "http", "asgi": ASGI, "http_version": http_version, "server": server,
        "client": client, "scheme": scheme, "method": method, "root_path": "",
        "path": path, "raw_path": raw_path, "query_string": query, "headers": headers,
        "state": state.lifespan_state.copy(),
        "extensions": {} if responder is None else {RESPOND: responder},
    }
    return scope


def problem_body(status: int, detail: str, code: str) -> bytes:
    """An RFC 9457 problem document the server itself answers with (before any app)."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    return _encode({"type": PROBLEM_TYPE + code, "title": title, "status": status,
                    "detail": detail, "code": code})


def whole_response(status: int, defaults: bytes, headers: bytes, body: bytes,
                   keep_alive: bool) -> bytes:
    """The bytes of a whole HTTP/1.1 response (``headers`` encoded lines)."""
    return b"%s%s%scontent-length: %d\r\n%s\r\n%s" % (
        status_line(status), defaults, headers, len(body),
        b"" if keep_alive else b"connection: close\r\n", body)


def problem_response(status: int, detail: str, code: str, defaults: bytes,
                     extra: bytes = b"") -> bytes:
    """A whole problem response that closes the connection."""
    headers = b"content-type: application/problem+json\r\n" + extra
    if status == 503:
        headers += b"retry-after: 1\r\n"
    return whole_response(status, defaults, headers, problem_body(status, detail, code), False)


class Lifespan:
    """The app's ASGI lifespan: ``startup`` before listening, ``shutdown`` after."""

    def __init__(self, app: Any, state: dict[str, Any]) -> None:
        self.app = app
        self.state = state
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        scope = {"type": "lifespan", "asgi": ASGI, "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._outbox.put)
        except BaseException as exc:
            log.exception("lifespan failed")
            await self._outbox.put({"type": "lifespan.failed", "message": str(exc)})
            if not isinstance(exc, Exception):
                raise

    async def _step(self, event: str) -> None:
        await self._inbox.put({"type": f"lifespan.{event}"})
        answer = await self._outbox.get()
        if answer["type"] != f"lifespan.{event}.complete":
            raise RuntimeError(f"lifespan {event} failed: {answer.get('message', '')}")

    async def startup(self) -> None:
        """Run the app's startup; raises ``RuntimeError`` if it failed."""
        self._task = asyncio.create_task(self._run(), name="hubbub-lifespan")
        await self._step("startup")

    async def shutdown(self) -> None:
        """Run the app's shutdown (after a successful startup)."""
        if self._task is None or self._task.done():
            return
        await self._step("shutdown")
        await self._task


__all__ = ["ASGI", "Lifespan", "http_scope", "problem_body", "problem_response",
           "split_target", "status_line", "whole_response"]
