"""The one table that maps errors to HTTP problems and WebSocket close codes.

HTTP errors are ``application/problem+json`` documents (RFC 9457). RFC 9457
§3.1 defines ``type``, ``title``, ``status``, ``detail`` and ``instance``;
"problem type definitions MAY extend the problem details object with
additional members", so hubbub adds ``code`` (stable, switchable), ``field``
(the input at fault), ``temporary`` and any data the error carries (a gap's
range, a resume cursor).

Core code raises :mod:`hubbub.protocol.errors`; only this module picks statuses.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.responses import Response

from ..protocol import errors
from ..protocol.status import TABLE

PROBLEM = "application/problem+json"
TYPE_BASE = "https://hubbub.dev/problems/"

_encode = msgspec.json.Encoder().encode


def lookup(exc: errors.HubbubError) -> tuple[int, str, int]:
    """(HTTP status, title, WebSocket close code) for an error."""
    for cls, status, title, close in TABLE:
        if isinstance(exc, cls):
            return status, title, close
    return 500, "Internal error", 1011


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    code: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + code, "title": title, "status": status, "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    if status == 503:
        headers = {**(headers or {}), "Retry-After": "1"}
    return Response(_encode(body), status, headers=headers, media_type=PROBLEM)


def problem_from(exc: errors.HubbubError, instance: str | None = None) -> Response:
    """The problem response for a hubbub error."""
    status, title, _ = lookup(exc)
    extra = dict(exc.extra)
    headers = None
    if isinstance(exc, errors.Unauthorized):
        # RFC 6750 §3: a 401 names the scheme; "If the request lacks any
        # authentication information ..., the resource server SHOULD NOT
        # include an error code", so only a token that was given and refused
        # gets error="invalid_token" (§3.1).
        challenge = 'Bearer realm="hubbub"'
        if exc.field in ("Authorization", "token"):
            challenge += ', error="invalid_token"'
        headers = {"WWW-Authenticate": challenge}
    return problem(
        status, title, exc.message, code=exc.code, field=exc.field,
        temporary=exc.temporary or None, instance=instance, headers=headers, **extra,
    )


def ws_error(exc: errors.HubbubError, op_id: Any = None) -> dict[str, Any]:
    """The ``err`` frame for a hubbub error."""
    frame: dict[str, Any] = {"op": "err", "id": op_id, **exc.to_dict()}
    return frame


def close_code(exc: errors.HubbubError) -> int:
    """The WebSocket close code for an error that ends the connection."""
    return lookup(exc)[2]
