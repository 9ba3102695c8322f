"""The admin API (:mod:`hubbub.transports.admin`; admin principals only).
"""

from __future__ import annotations

from typing import Any

from .jobs import JOB_ID
from .parts import json_answer, problems, ref

SCHEMAS: dict[str, Any] = {}
SCHEMAS["Connection"] = {
    "type": "object",
    "required": ["id", "node", "door", "since", "subscriptions"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{16}$",
               "description": "also its presence conn"},
        "node": {"type": "string", "description": "the hub node that holds it"},
        "door": {"type": "string", "enum": ["ws", "sse"]},
        "subject": {"type": ["string", "null"], "description": "who it authenticated as"},
        "remote": {"type": ["string", "null"], "description": "host:port as the node saw it"},
        "since": {"type": "integer", "description": "opened (ms since the Unix epoch)"},
        "subscriptions": {"type": "array", "items": {"type": "string"},
                          "description": "its topics and patterns, group ones too"},
    },
}
_ADMIN = "Admin principals only (docs/operations.md). "
_CONN_ID = {"name": "id", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}
PATHS: dict[str, Any] = {
    "/v1/connections": {"get": {
        "summary": "Every WebSocket and SSE connection of the cluster",
        "description": _ADMIN + "Other nodes' connections are as fresh as their last "
                       "list (written at most every 0.5 s).",
        "responses": {"200": json_answer({"type": "object", "properties": {
            "count": {"type": "integer"},
            "connections": {"type": "array", "items": ref("Connection")}}},
            "The connections, oldest first"), **problems(401, 403, 503)}}},
    "/v1/connections/{id}": {"parameters": [_CONN_ID], "delete": {
        "summary": "Disconnect a connection, on whichever node holds it",
        "description": _ADMIN + "A WebSocket is closed with 4010 and a reason; an SSE "
                       "stream ends with a close event carrying the reason.",
        "responses": {"204": {"description": "Gone from the list"},
                      "202": {"description": "Ordered, not gone from the list yet"},
                      **problems(400, 401, 403, 404, 503)}}},
    "/v1/topics/{topic}/purge": {"parameters": [ref("Topic", "parameters")], "post": {
        "summary": "Remove every retained message of a topic (offsets go on)",
        "description": _ADMIN + "Readers whose cursor is older get a trimmed gap.",
        "responses": {"200": json_answer({"type": "object", "properties": {
            "topic": {"type": "string"}, "removed": {"type": "integer"}}}, "Purged"),
            **problems(400, 401, 403, 404, 503)}}},
    "/v1/jobs/{id}/cancel": {"parameters": [JOB_ID], "post": {
        "summary": "Cancel a job that is not finished",
        "description": _ADMIN + "Its worker's next report is refused with 409.",
        "responses": {"200": json_answer(ref("Job"), "The cancelled job"),
                      **problems(400, 401, 403, 404, 409, 503)}}},
    "/v1/presence": {"get": {
        "summary": "Every presence entry of every topic",
        "description": _ADMIN,
        "responses": {"200": json_answer({"type": "object", "properties": {
            "count": {"type": "integer"},
            "present": {"type": "array", "items": {"type": "object"}, "maxItems": 1000},
            "truncated": {"type": "boolean"}}}, "The entries"),
            **problems(401, 403, 503)}}},
    "/v1/topics/{topic}/presence/{conn}": {"parameters": [
        ref("Topic", "parameters"),
        {"name": "conn", "in": "path", "required": True, "schema": {"type": "string"}}],
        "delete": {
            "summary": "Drop a presence entry (a leave event with reason dropped)",
            "description": _ADMIN + "The node holding the connection stops renewing it.",
            "responses": {"204": {"description": "Dropped"},
                          **problems(400, 401, 403, 404, 503)}}},
}

# DELETE beside the topic's GET and POST (the admin API's).
DELETE_TOPIC: dict[str, Any] = {
    "summary": "Delete a topic's log: its next message starts a new epoch at offset 1",
    "description": _ADMIN + "Readers of older cursors get an epoch gap (409 on polls); "
                   "live subscriptions naming the topic are ended with their cursors.",
    "responses": {"204": {"description": "Deleted"},
                  **problems(400, 401, 403, 404, 503)}}


__all__ = ["DELETE_TOPIC", "PATHS", "SCHEMAS"]
