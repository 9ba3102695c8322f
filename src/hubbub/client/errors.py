"""Errors the hub reports, turned back into :mod:`hubbub.protocol.errors` exceptions.

The server sends RFC 9457 problem documents on HTTP, ``err`` frames and close
codes on WebSockets, ``error`` events on SSE. Each carries the stable
``code`` of a :class:`~hubbub.protocol.errors.HubbubError` subclass, so the client
raises the same class the server raised: ``except InvalidCursor`` works on
both sides of the wire.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec

from ..protocol import errors

#: RFC 9457 §3.1 members and our own standard ones; the rest is error data.
_STANDARD = {"type", "title", "status", "detail", "code", "field", "temporary", "instance",
             "message", "op", "id"}
_CURSOR_RE = re.compile(r"[0-9a-z]{10}\.[0-9]{1,19}\.[0-9]{1,19}")


def _codes() -> dict[str, type[errors.HubbubError]]:
    out: dict[str, type[errors.HubbubError]] = {}
    todo: list[type[errors.HubbubError]] = [errors.HubbubError]
    while todo:
        cls = todo.pop()
        out.setdefault(cls.code, cls)
        todo.extend(cls.__subclasses__())
    return out


_BY_CODE = _codes()


def error_from_problem(doc: Any, status: int = 0) -> errors.HubbubError:
    """The exception a problem document or ``err`` frame describes.

    Unknown codes fall back on the HTTP status: 5xx is
    :class:`~hubbub.protocol.errors.Unavailable` (retrying may help), anything else a
    :class:`~hubbub.protocol.errors.PeerError`.
    """
    if not isinstance(doc, dict):
        doc = {}
    code = doc.get("code")
    cls = _BY_CODE.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = errors.Unavailable if status >= 500 or status == 0 else errors.PeerError
    message = doc.get("detail") or doc.get("message") or f"hub answered {status or 'an error'}"
    field = doc.get("field")
    extra = {k: v for k, v in doc.items() if k not in _STANDARD}
    exc = cls(str(message), field=field if isinstance(field, str) else None, **extra)
    exc.status, exc.problem = status, dict(doc)
    return exc


async def error_from_response(response: httpx.Response) -> errors.HubbubError:
    """The exception an HTTP error response stands for (reads its body)."""
    body = await response.aread()
    try:
        doc = msgspec.json.decode(body)
    except msgspec.DecodeError:
        doc = {"detail": f"hub answered {response.status_code} {response.reason_phrase}"}
    return error_from_problem(doc, response.status_code)


class DoorRefused(errors.HubbubError):
    """A transport (door) is refused on the way to the hub: by the hub itself
    (WebSocket turned off) or by a proxy in front of it.

    Raised by ``subscribe(..., transport=X)`` when X is refused, and by
    ``transport="auto"`` when every door is. ``extra["transport"]`` names
    the door, ``status`` is the HTTP status of the refusal (0 for a broken
    handshake).
    """

    code = "door-refused"


#: Problem codes the hub uses when it has no route (or method) for a path:
#: on a subscription door they mean "this door is not here", not a hub error.
_NO_ROUTE = {None, "not-found", "method-not-allowed", "http-error"}


def refusal(transport: str, status: int, doc: Any) -> DoorRefused | None:
    """A :class:`DoorRefused` when an answer to opening a door means "not here".

    The rules: a ``2xx`` or ``3xx`` where an upgrade or an event stream was
    expected, or a ``4xx`` that is not a hubbub problem of its own (no
    ``code``, or only "no such route"): a ``403``, ``404``, ``405``, ``406``
    or ``426`` from a proxy or a hub without that door. A hubbub problem such
    as ``invalid-topic`` or ``forbidden`` is the hub speaking, and is raised
    as itself on every door; a ``5xx`` is temporary (reconnect, same door).
    """
    if status >= 500:
        return None
    code = doc.get("code") if isinstance(doc, dict) else None
    if 400 <= status < 500 and code not in _NO_ROUTE:
        return None
    exc = DoorRefused(f"the {transport} door is refused (HTTP {status})", transport=transport)
    exc.status = status
    return exc


async def door_error(response: httpx.Response, transport: str) -> errors.HubbubError:
    """What a failed answer to opening ``transport`` means: a refusal or the hub's error."""
    err = await error_from_response(response)
    return refusal(transport, response.status_code, err.problem) or err


def cursor_in(text: str) -> str | None:
    """The first cursor in a text (a WebSocket close reason), if any."""
    m = _CURSOR_RE.search(text)
    return m.group(0) if m else None

