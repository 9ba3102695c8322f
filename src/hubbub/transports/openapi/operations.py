"""Operations (docs/operations.md): metrics, statistics, the dashboard.
"""

from __future__ import annotations

from typing import Any

from .parts import json_answer, problems, ref

SCHEMAS: dict[str, Any] = {}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
SCHEMAS["Stats"] = {
    "type": "object",
    "description": "This node's counters (since it started) and what the store knows; "
                   "the same snapshot /metrics exports. Store parts (topics, groups' "
                   "pending, jobs, uploads) are left out, and store.up is false, when the "
                   "store does not answer.",
    "required": ["node", "published", "publish_latency", "doors", "subscriptions",
                 "fanout_messages", "problems", "store", "groups", "jobs", "uploads",
                 "cluster"],
    "properties": {
        "cluster": {"type": "object", "description": (
            "Every node's summary and their sums (docs/operations.md); each node writes "
            "its own every 2 s. Only this node when the store does not answer."),
            "required": ["nodes", "published", "deliveries", "open", "subscriptions",
                         "members"],
            "properties": {
                "nodes": {"type": "integer"}, "published": {"type": "integer"},
                "deliveries": {**_COUNTS, "description": "by door"},
                "open": {**_COUNTS, "description": "connections open now, by door"},
                "subscriptions": {"type": "integer"},
                "members": {"type": "array", "items": {"type": "object", "properties": {
                    "id": {"type": "string"}, "started": {"type": "integer"},
                    "draining": {"type": "boolean"}, "published": {"type": "integer"},
                    "deliveries": _COUNTS, "open": _COUNTS,
                    "subscriptions": {"type": "integer"}}}}}},
        "node": {"type": "object", "properties": {
            "version": {"type": "string"}, "engine": {"type": "string"},
            "started": {"type": "integer", "description": "ms since the Unix epoch"},
            "uptime": {"type": "number", "description": "seconds"},
            "draining": {"type": "boolean"}}},
        "published": {"type": "object", "properties": {
            "total": {"type": "integer"}, "duplicates": {"type": "integer"},
            "namespaces": {**_COUNTS, "description": "messages stored, by namespace; "
                                                     "past 200 namespaces under (other)"}}},
        "publish_latency": {"type": "object", "properties": {
            "count": {"type": "integer"}, "sum": {"type": "number", "description": "seconds"},
            "buckets": {"type": "array", "description": "[upper bound in seconds (null: "
                        "+Inf), cumulative count]", "items": {"type": "array"}}}},
        "doors": {"type": "object", "description": "ws, sse, longpoll, poll",
                  "additionalProperties": {"type": "object", "properties": {
                      "deliveries": {"type": "integer"},
                      "open": {"type": "integer", "description": "connections open now"},
                      "slow_consumers": {"type": "integer"}, "gaps": _COUNTS}}},
        "subscriptions": {"type": "integer"},
        "fanout_messages": {"type": "integer"},
        "problems": {**_COUNTS, "description": "HTTP problem answers by code"},
        "store": {"type": "object", "properties": {"up": {"type": "boolean"},
                                                   "errors": _COUNTS}},
        "topics": {"type": "integer"},
        "groups": {"type": "array", "items": {"type": "object", "properties": {
            "group": {"type": "string"}, "patterns": {"type": "array"},
            "pending": {"type": ["integer", "null"]}, "leased": {"type": "integer"},
            "delivered": {"type": "integer"}, "acked": {"type": "integer"},
            "nacked": {"type": "integer"}, "dead_lettered": {"type": "integer"}}}},
        "jobs": {"type": "object", "properties": {
            "states": _COUNTS, "active": {"type": "array", "items": {"type": "object"}},
            "partial": {"type": "boolean", "description": "more job records than were read"}}},
        "uploads": {"type": "object", "properties": {
            "bytes_received": {"type": "integer"}, "in_progress": {"type": "integer"},
            "complete": {"type": "integer"},
            "active": {"type": "array", "items": {"type": "object"}},
            "partial": {"type": "boolean"}}},
    },
}
PATHS: dict[str, Any] = {
    "/metrics": {"get": {
        "summary": "Prometheus metrics (docs/operations.md); admins only with auth on",
        "description": "Text format 0.0.4, or OpenMetrics when Accept asks for it.",
        "responses": {"200": {"description": "The metrics", "content": {
            "text/plain; version=0.0.4": {"schema": {"type": "string"}},
            "application/openmetrics-text; version=1.0.0": {"schema": {"type": "string"}}}}}}},
    "/v1/stats": {"get": {
        "summary": "This node's statistics as JSON (the dashboard reads it); admins only "
                   "with auth on",
        "responses": {"200": json_answer(ref("Stats"), "The snapshot"), **problems(503)}}},
    "/": {"get": {
        "summary": "The dashboard (an HTML page; its data comes from /v1)",
        "responses": {"200": {"description": "The page",
                              "content": {"text/html": {"schema": {"type": "string"}}}}}}},
    "/dashboard/{name}": {"get": {
        "summary": "The dashboard's script and stylesheet",
        "parameters": [{"name": "name", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": ["app.js", "style.css"]}}],
        "responses": {"200": {"description": "The file", "content": {
            "text/javascript": {"schema": {"type": "string"}},
            "text/css": {"schema": {"type": "string"}}}}, **problems(404)}}},
}


__all__ = ["PATHS", "SCHEMAS"]
