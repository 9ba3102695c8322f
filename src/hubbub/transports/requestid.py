"""Request ids: one per HTTP request or WebSocket connection, taken from the
client's ``X-Request-Id`` or made here, echoed in the response, and carried
by every log record made while the request is served.

The id lives in a context variable (:data:`REQUEST_ID`): asyncio copies the
context into each task, so records of the request's own code and of the
tasks it starts carry it, and :class:`RequestIdFilter` puts it on them.

Trade-off: an id must be echoed on every response, and the server's
whole-response path (``hubbub.respond``, :mod:`hubbub.transports.extensions`)
writes pre-built headers, shared by a crowd of long polls. Rather than give
each answer of a crowd headers of its own, the middleware hides that
extension, so responses go through ASGI ``send``, which costs a publish and a
long poll some speed. This is why request ids come with JSON logs
(``hubbub serve --log-format json``), where they are wanted, and are off
otherwise.
"""

from __future__ import annotations

import logging
import re
import secrets
from contextvars import ContextVar
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .extensions import RESPOND

HEADER = b"x-request-id"
#: What a client's id may be (else a new one is made): short, printable, no spaces.
VALID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")

#: The id of the request being served in this context; ``None`` outside one.
REQUEST_ID: ContextVar[str | None] = ContextVar("hubbub_request_id", default=None)


def request_id(scope: Scope) -> str:
    """The client's ``X-Request-Id`` if it is a valid one, else a new random id."""
    for name, value in scope.get("headers", ()):
        if name == HEADER and VALID.fullmatch(value):
            return str(value.decode("ascii"))
    return secrets.token_hex(8)


class RequestId:
    """ASGI middleware: give each request an id (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        rid = request_id(scope)
        token = REQUEST_ID.set(rid)
        extensions: dict[str, Any] | None = scope.get("extensions")
        if extensions is not None and RESPOND in extensions:
            scope = {**scope, "extensions": {k: v for k, v in extensions.items()
                                             if k != RESPOND}}
        header = (HEADER, rid.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Put the context's request id on each record as ``request_id`` (``None``
    outside a request); passes every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


__all__ = ["HEADER", "REQUEST_ID", "RequestId", "RequestIdFilter", "request_id"]
