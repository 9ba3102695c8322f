"""The OpenAPI 3.1 description of hubbub's HTTP surface, served at ``/openapi.json``.

Kept as a Python dict next to the code it describes (and checked against the
application's routes by ``tests/transports/test_http.py``), so the document
and the routes cannot drift apart unnoticed. Every error is an RFC 9457
problem document; the ``Problem`` schema lists its members.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from .. import __version__ as _version

JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _problems(*statuses: int) -> dict[str, Any]:
    return {str(s): _ref(f"P{s}", "responses") for s in statuses}


_STATUS_TEXT = {
    400: "Bad input: malformed body, query, topic, cursor, group name or lease id",
    404: "No such topic, group or route",
    409: "History was lost past the cursor (the problem carries the range and a cursor "
         "to continue from knowingly); or a group exists for other topics; or no lease "
         "of a settle was settled (the problem carries each id's outcome in results); "
         "or a request was already answered",
    410: "A reply after its request's deadline; nothing stored",
    413: "Body larger than the namespace's max_message_size",
    503: "The store cannot be reached or the hub is shutting down; retry later",
    504: "No reply to the request within its timeout",
}

_SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details, extended with hubbub's members.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
            "code": {"type": "string", "description": "stable identifier, e.g. invalid-topic"},
            "field": {"type": "string", "description": "the input at fault, e.g. after, [3].topic"},
            "temporary": {"type": "boolean", "description": "a retry later may succeed"},
            "topic": {"type": "string"},
            "from": {"type": "integer"},
            "to": {"type": "integer"},
            "reason": {"type": "string", "enum": ["trimmed", "epoch", "dropped"]},
            "cursor": {"type": "string", "description": "where to continue (gap problems)"},
            "results": {"type": "object", "additionalProperties": {"type": "string"},
                        "description": "each lease id's outcome (settle conflicts)"},
        },
    },
    "Message": {
        "type": "object",
        "description": "The same object on every door. Non-JSON payloads add content_type "
                       "and carry data base64-encoded.",
        "required": ["topic", "offset", "cursor", "time", "id", "data"],
        "properties": {
            "topic": {"type": "string"},
            "offset": {"type": "integer", "minimum": 1},
            "cursor": {"type": "string", "description": "opaque; resumes just after this message"},
            "time": {"type": "integer", "description": "milliseconds since the Unix epoch"},
            "id": {"type": "string"},
            "content_type": {"type": "string"},
            "data": {},
        },
    },
    "Receipt": {
        "type": "object",
        "required": ["topic", "offset", "cursor", "id", "time"],
        "properties": {
            "topic": {"type": "string"},
            "offset": {"type": "integer"},
            "cursor": {"type": "string"},
            "id": {"type": "string"},
            "time": {"type": "integer"},
            "duplicate": {"type": "boolean",
                          "description": "true when an Idempotency-Key matched an earlier publish"},
        },
    },
    "BatchItem": {
        "type": "object",
        "required": ["topic", "data"],
        "additionalProperties": False,
        "properties": {
            "topic": {"type": "string"},
            "data": {"description": "any JSON value; a base64 string when content_type is "
                                    "given and not JSON"},
            "key": {"type": "string", "description": "idempotency key"},
            "content_type": {"type": "string"},
        },
    },
    "Gap": {
        "type": "object",
        "required": ["topic", "from", "to", "reason"],
        "properties": {
            "topic": {"type": "string"},
            "from": {"type": "integer"},
            "to": {"type": "integer"},
            "reason": {"type": "string", "enum": ["trimmed", "epoch", "dropped"]},
        },
    },
    "Page": {
        "type": "object",
        "required": ["messages", "cursor"],
        "properties": {
            "messages": {"type": "array", "items": _ref("Message")},
            "cursor": {"type": "string", "description": "pass as after= to go on"},
            "gaps": {"type": "array", "items": _ref("Gap"),
                     "description": "multi-topic polls only: history lost on the way"},
        },
    },
    "TopicInfo": {
        "type": "object",
        "properties": {
            "topic": {"type": "string"}, "epoch": {"type": "string"},
            "first_offset": {"type": "integer"}, "last_offset": {"type": "integer"},
            "count": {"type": "integer"}, "cursor": {"type": "string"},
            "created": {"type": "integer"}, "ephemeral": {"type": "boolean"},
            "retention": {"type": "object"}, "subscribers": {"type": "integer"},
        },
    },
    "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
    "Delivery": {
        "description": "A message leased to the caller: the Message object with its lease.",
        "allOf": [_ref("Message"), {
            "type": "object",
            "required": ["lease", "attempt", "deadline"],
            "properties": {
                "lease": {"type": "string", "description": "the lease id to ack, nack or extend"},
                "attempt": {"type": "integer", "minimum": 1,
                            "description": "1 on first delivery, then one more per redelivery"},
                "deadline": {"type": "integer", "description": "when the lease runs out "
                                                               "(ms since the Unix epoch)"},
            },
        }],
    },
    "Deliveries": {
        "type": "object", "required": ["messages"],
        "properties": {"messages": {"type": "array", "items": _ref("Delivery")}},
    },
    "LeaseIds": {
        "type": "array", "minItems": 1, "maxItems": 1000,
        "items": {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,18})\.[0-9a-f]{12}$"},
    },
    "Outcomes": {
        "type": "object", "required": ["results"],
        "properties": {"results": {
            "type": "object",
            "additionalProperties": {"type": "string", "enum": ["ok", "expired", "unknown"]},
            "description": "per lease id: ok (settled), expired (the lease was replaced; "
                           "nothing changed), unknown (never given or already settled; "
                           "nothing changed)"}},
    },
    "GroupInfo": {
        "type": "object",
        "required": ["group", "topics", "pending", "cursor", "max_deliver",
                     "dead_letter_topic", "created"],
        "properties": {
            "group": {"type": "string"},
            "topics": {"type": "array", "items": {"type": "string"}},
            "pending": {"type": "integer", "description": "messages leased or waiting for a "
                                                         "redelivery"},
            "cursor": {"type": "string", "description": "watermark of the newest message the "
                                                        "group has taken: poll the topics after "
                                                        "it to see what is still to come"},
            "max_deliver": {"type": "integer"},
            "dead_letter_topic": {"type": "string"},
            "created": {"type": "integer"},
        },
    },
}

_PARAMETERS: dict[str, Any] = {
    "Topic": {"name": "topic", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_\-:@]+(\.[A-Za-z0-9_\-:@]+)*$",
                         "maxLength": 255}},
    "Topics": {"name": "topic", "in": "query", "required": True, "explode": True,
               "description": "topic names or patterns (* one token, > the rest); repeat it",
               "schema": {"type": "array", "items": {"type": "string"}, "maxItems": 100}},
    "After": {"name": "after", "in": "query",
              "description": "a cursor, or start or end; empty counts as absent",
              "schema": {"type": "string"}},
    "Limit": {"name": "limit", "in": "query",
              "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
    "Wait": {"name": "wait", "in": "query",
             "description": "seconds to hold an empty answer (long poll); 0 answers at once",
             "schema": {"type": "number", "minimum": 0, "maximum": 60, "default": 0}},
    "Group": {"name": "group", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_\-:@]{1,64}$"}},
    "LastEventID": {"name": "Last-Event-ID", "in": "header",
                    "description": "sent by EventSource on reconnect; wins over after",
                    "schema": {"type": "string"}},
}

_EVENTS = {
    "description": "text/event-stream (WHATWG HTML, server-sent events). First retry: 2000, "
                   "then an event ready (id: the resume cursor), then message events (id: the "
                   "message cursor, data: a Message), gap events (data: a Gap), comments every "
                   "heartbeat seconds of silence; error (slow consumer) or close (hub shutting "
                   "down) end the stream with the cursor to resume from.",
    "content": {"text/event-stream": {"schema": {"type": "string"}}},
}

_PATHS: dict[str, Any] = {
    "/v1/topics/{topic}": {
        "parameters": [_ref("Topic", "parameters")],
        "post": {
            "summary": "Publish one message",
            "description": "application/json and */*+json bodies are stored as JSON; any other "
                           "body as bytes with its Content-Type kept (application/octet-stream "
                           "when absent).",
            "parameters": [{"name": "Idempotency-Key", "in": "header",
                            "schema": {"type": "string", "maxLength": 200}}],
            "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
            "responses": {
                "201": _json(_ref("Receipt"), "Stored (committed on durable engines)"),
                "200": _json(_ref("Receipt"), "Duplicate: the Idempotency-Key was seen; "
                                              "nothing stored, the first receipt returned"),
                **_problems(400, 413, 503),
            },
        },
        "get": {
            "summary": "Topic metadata",
            "responses": {"200": _json(_ref("TopicInfo"), "The topic"), **_problems(400, 404)},
        },
    },
    "/v1/publish": {
        "post": {
            "summary": "Publish a batch atomically (at most 1000 items)",
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "array", "items": _ref("BatchItem"), "minItems": 1, "maxItems": 1000}}}},
            "responses": {
                "201": _json({"type": "object", "properties": {
                    "results": {"type": "array", "items": _ref("Receipt")}}}, "All stored"),
                **_problems(400, 413, 503),
            },
        },
    },
    "/v1/topics": {
        "get": {
            "summary": "List topics",
            "parameters": [{"name": "pattern", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": _json({"type": "object", "properties": {
                "topics": {"type": "array", "items": _ref("TopicInfo")}}}, "Topics"),
                **_problems(400)},
        },
    },
    "/v1/topics/{topic}/messages": {
        "parameters": [_ref("Topic", "parameters")],
        "get": {
            "summary": "Short or long poll one topic",
            "parameters": [_ref(p, "parameters") for p in ("After", "Limit", "Wait")],
            "responses": {"200": _json(_ref("Page"), "Messages after the cursor"),
                          **_problems(400, 409, 503)},
        },
    },
    "/v1/messages": {
        "get": {
            "summary": "Short or long poll several topics and patterns",
            "description": "Gaps are reported in-band: one cursor covers every topic, so a gap "
                           "in one cannot be refused without stalling the others.",
            "parameters": [_ref(p, "parameters") for p in ("Topics", "After", "Limit", "Wait")],
            "responses": {"200": _json(_ref("Page"), "Messages and gaps after the cursor"),
                          **_problems(400, 503)},
        },
    },
    "/v1/topics/{topic}/events": {
        "parameters": [_ref("Topic", "parameters")],
        "get": {
            "summary": "Server-sent events for one topic (from the live end by default)",
            "parameters": [_ref("After", "parameters"), _ref("LastEventID", "parameters")],
            "responses": {"200": _EVENTS, **_problems(400, 503)},
        },
    },
    "/v1/events": {
        "get": {
            "summary": "Server-sent events over several topics and patterns",
            "parameters": [_ref(p, "parameters") for p in ("Topics", "After", "LastEventID")],
            "responses": {"200": _EVENTS, **_problems(400, 503)},
        },
    },
    "/v1/ws": {
        "get": {
            "summary": "WebSocket (RFC 6455 upgrade of this GET)",
            "description": "Subprotocols hubbub.v1.json (text frames) and hubbub.v1.msgpack "
                           "(binary frames); ops sub (also of a consumer group), unsub, pub, ack, "
                           "nack, extend, ping.",
            "parameters": [
                {"name": "Upgrade", "in": "header", "required": True,
                 "schema": {"type": "string", "const": "websocket"}},
                {"name": "Sec-WebSocket-Protocol", "in": "header",
                 "schema": {"type": "string", "enum": ["hubbub.v1.json", "hubbub.v1.msgpack"]}},
            ],
            "responses": {"101": {"description": "Switching Protocols"}},
        },
    },
    "/v1/groups/{group}": {
        "parameters": [_ref("Group", "parameters")],
        "get": {
            "summary": "Consumer group state",
            "responses": {"200": _json(_ref("GroupInfo"), "The group"), **_problems(400, 404)},
        },
    },
    "/v1/groups/{group}/pull": {
        "parameters": [_ref("Group", "parameters")],
        "post": {
            "summary": "Lease messages of a consumer group (long poll with wait)",
            "description": "The first pull names the topics and creates the group at start "
                           "(default end: only messages stored from then on); later pulls may "
                           "omit topic or must name the same. Each message goes to one puller "
                           "at a time; unacked ones come back after their lease, up to the "
                           "namespace's max_deliver tries, then go to dlq.{group}.",
            "parameters": [
                {**_PARAMETERS["Topics"], "required": False,
                 "description": "the group's topic names or patterns; repeat it"},
                {"name": "max", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}},
                _ref("Wait", "parameters"),
                {"name": "lease", "in": "query", "description": "seconds each lease lasts",
                 "schema": {"type": "number", "minimum": 0.1, "maximum": 43200, "default": 30}},
                {"name": "start", "in": "query",
                 "description": "where a new group begins; ignored once it exists",
                 "schema": {"type": "string", "enum": ["start", "end"], "default": "end"}},
            ],
            "responses": {"200": _json(_ref("Deliveries"), "Leased messages (maybe none)"),
                          **_problems(400, 404, 409, 503)},
        },
    },
    **{f"/v1/groups/{{group}}/{action}": {
        "parameters": [_ref("Group", "parameters")],
        "post": {
            "summary": summary,
            "description": "Each lease id is judged on its own. 200 when at least one was "
                           "settled (the others changed nothing); 409 with the same results "
                           "when none was; 400 (nothing changed) for malformed input.",
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "required": ["ids"], "additionalProperties": False,
                "properties": {"ids": _ref("LeaseIds"), **extra}}}}},
            "responses": {"200": _json(_ref("Outcomes"), "Each id's outcome"),
                          **_problems(400, 404, 409, 413, 503)},
        },
    } for action, summary, extra in [
        ("ack", "Ack leased messages: done", {}),
        ("nack", "Give leased messages back, for a redelivery after delay seconds", {
            "delay": {"type": "number", "minimum": 0, "maximum": 604800, "default": 0},
            "error": {"type": "string", "maxLength": 1000,
                      "description": "kept for the dead-letter topic"}}),
        ("extend", "Extend leases to lease seconds from now", {
            "lease": {"type": "number", "minimum": 0.1, "maximum": 43200, "default": 30}}),
    ]},
    "/v1/requests/{topic}": {"parameters": [_ref("Topic", "parameters")], "post": {
        "summary": "Publish a request and wait for one reply (docs/requests.md)",
        "parameters": [{"name": "timeout", "in": "query", "schema": {
            "type": "number", "exclusiveMinimum": 0, "maximum": 60, "default": 5}}],
        "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
        "responses": {"200": _json(_ref("Message"), "The first reply"),
                      **_problems(400, 413, 503, 504)}}},
    "/v1/replies/{request}": {"parameters": [
        {"name": "request", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,15})\.[0-9a-f]{32}$"}}],
        "post": {
            "summary": "Reply to a request (only the first reply is stored)",
            "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
            "responses": {"201": _json(_ref("Receipt"), "Stored for the caller"),
                          **_problems(400, 409, 410, 413, 503)}}},
    "/healthz": {"get": {"summary": "Liveness",
                         "responses": {"200": _json(_ref("Status"), "The process answers")}}},
    "/readyz": {"get": {"summary": "Readiness", "responses": {
        "200": _json(_ref("Status"), "The store answers"), **_problems(503)}}},
    "/openapi.json": {"get": {"summary": "This document",
                              "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "hubbub",
        "version": _version,
        "description": "A real-time messaging hub: every topic is a durable ordered log; "
                       "HTTP, polling, SSE and WebSocket are doors onto it.",
    },
    "paths": _PATHS,
    "components": {
        "schemas": _SCHEMAS,
        "parameters": _PARAMETERS,
        "responses": {
            f"P{status}": {"description": text,
                           "content": {PROBLEM: {"schema": _ref("Problem")}}}
            for status, text in _STATUS_TEXT.items()
        },
    },
}


@functools.cache
def spec_json() -> bytes:
    """The spec as JSON bytes, encoded once."""
    return msgspec.json.encode(SPEC)
