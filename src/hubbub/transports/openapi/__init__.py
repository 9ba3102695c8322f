"""The OpenAPI 3.1 description of hubbub's HTTP surface, served at ``/openapi.json``.

Kept as Python dicts next to the code it describes (and checked against the
application's routes by ``tests/transports/test_http.py``), so the document
and the routes cannot drift apart unnoticed. Every error is an RFC 9457
problem document; the ``Problem`` schema lists its members.

One module per area: :mod:`.doors` (publish, read, SSE, WebSocket, groups,
requests, presence, probes), :mod:`.uploads`, :mod:`.jobs`, :mod:`.admin` and
:mod:`.operations`; :mod:`.schemas` and :mod:`.parts` hold what they share.
This module puts them together in one document, :data:`SPEC`.
"""

from __future__ import annotations

import copy
from typing import Any

import msgspec

from ... import __version__ as _version
from . import admin, doors, jobs, operations, schemas, uploads
from .parts import PARAMETERS, PROBLEM, STATUS_TEXT, ref


def _build() -> dict[str, Any]:
    """The whole document, made of copies of the areas' parts (which stay as they are)."""
    paths: dict[str, Any] = copy.deepcopy({
        **doors.PATHS, **uploads.PATHS, **jobs.PATHS, **admin.PATHS, **doors.PROBES,
        **operations.PATHS,
    })
    # DELETE beside the topic's GET and POST (the admin API's).
    paths["/v1/topics/{topic}"]["delete"] = copy.deepcopy(admin.DELETE_TOPIC)
    spec: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "hubbub",
            "version": _version,
            "description": "A real-time messaging hub: every topic is a durable ordered log; "
                           "HTTP, polling, SSE and WebSocket are doors onto it.",
        },
        "paths": paths,
        "components": copy.deepcopy({
            "schemas": {**schemas.SCHEMAS, **jobs.SCHEMAS, **admin.SCHEMAS,
                        **operations.SCHEMAS},
            "parameters": PARAMETERS,
            "responses": {
                f"P{status}": {"description": text,
                               "content": {PROBLEM: {"schema": ref("Problem")}}}
                for status, text in STATUS_TEXT.items()
            },
        }),
    }
    # Authentication (docs/auth.md): a bearer token (JWT or API key) in the
    # Authorization header, or in ?token= where headers cannot be sent (EventSource,
    # WebSocket). A hub with no [auth] lets everyone in: hence the empty alternative.
    spec["components"]["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer",
                   "description": "A JWT (HS256, RS256, ES256, EdDSA) or an API key"},
        "token": {"type": "apiKey", "in": "query", "name": "token",
                  "description": "The same token, for browsers' EventSource and WebSocket; "
                                 "it appears in access logs, so keep such tokens short-lived"},
    }
    spec["security"] = [{"bearer": []}, {"token": []}, {}]
    for path, item in paths.items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            if (path in ("/healthz", "/readyz", "/openapi.json", "/", "/dashboard/{name}")
                    or method == "options"):
                # Always open: probes, this document, the dashboard's files, CORS preflights.
                op["security"] = []
            else:
                for status in (401, 403):
                    op["responses"].setdefault(str(status), ref(f"P{status}", "responses"))
            # Browser rules (docs/security.md): every route but the probes checks
            # the Host; writes and WebSocket upgrades check the Origin.
            if path not in ("/healthz", "/readyz"):
                op["responses"].setdefault("421", ref("P421", "responses"))
            if method in ("post", "put", "patch", "delete") or path == "/v1/ws":
                op["responses"].setdefault("403", ref("P403", "responses"))
    return spec


#: The document (read it, never change it).
SPEC: dict[str, Any] = _build()
_SPEC_JSON = msgspec.json.encode(SPEC)


def spec_json() -> bytes:
    """The spec as JSON bytes, encoded once."""
    return _SPEC_JSON


__all__ = ["SPEC", "spec_json"]
