"""The doors onto the log: publish, read, SSE, WebSocket, groups, requests,
presence, and the probes.
"""

from __future__ import annotations

from typing import Any

from .parts import EVENTS, JSON, PARAMETERS, json_answer, problems, ref

PATHS: dict[str, Any] = {
    "/v1/topics/{topic}": {
        "parameters": [ref("Topic", "parameters")],
        "post": {
            "summary": "Publish one message",
            "description": "application/json and */*+json bodies are stored as JSON; any other "
                           "body as bytes with its Content-Type kept (application/octet-stream "
                           "when absent).",
            "parameters": [ref("IdempotencyKey", "parameters")],
            # No body is an empty payload (bytes; JSON needs a value).
            "requestBody": {"required": False, "content": {"*/*": {"schema": {}}}},
            "responses": {
                "201": json_answer(ref("Receipt"), "Stored (committed on durable engines)"),
                "200": json_answer(ref("Receipt"), "Duplicate: the Idempotency-Key was seen; "
                                              "nothing stored, the first receipt returned"),
                **problems(400, 413, 503),
            },
        },
        "get": {
            "summary": "Topic metadata",
            "responses": {"200": json_answer(ref("TopicInfo"), "The topic"), **problems(400, 404)},
        },
    },
    "/v1/publish": {
        "post": {
            "summary": "Publish a batch atomically (at most 1000 items)",
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "array", "items": ref("BatchItem"), "minItems": 1, "maxItems": 1000}}}},
            "responses": {
                "201": json_answer({"type": "object", "properties": {
                    "results": {"type": "array", "items": ref("Receipt")}}}, "All stored"),
                **problems(400, 413, 503),
            },
        },
    },
    "/v1/topics": {
        "get": {
            "summary": "List topics, a page at a time, in name order",
            "description": "Only the topics the caller may subscribe to. When there are "
                           "more, next (and a Link header, rel=next) is the next page's URL.",
            "parameters": [
                {"name": "pattern", "in": "query", "schema": {"type": "string"}},
                {"name": "after", "in": "query", "description": "list topics after this one",
                 "schema": {"type": "string"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1000}},
            ],
            "responses": {"200": json_answer({"type": "object", "required": ["topics"], "properties": {
                "topics": {"type": "array", "items": ref("TopicInfo")},
                "next": {"type": "string", "description": "the next page's URL"}}}, "Topics"),
                **problems(400)},
        },
    },
    "/v1/topics/{topic}/messages": {
        "parameters": [ref("Topic", "parameters")],
        "get": {
            "summary": "Short or long poll one topic; or, with before, read it from the end",
            "description": "With before=end or before=CURSOR (not with after or wait): the "
                           "limit newest messages before that place, oldest first, with "
                           "prev to page further back (null: nothing older is retained) "
                           "and cursor to read on, or follow live, from (docs/http.md).",
            "parameters": [ref(p, "parameters") for p in ("After", "Before", "Limit", "Wait")],
            "responses": {"200": json_answer({"oneOf": [ref("Page"), ref("HistoryPage")]},
                                       "Messages after the cursor (or before, with before)"),
                          **problems(400, 409, 503)},
        },
    },
    "/v1/messages": {
        "get": {
            "summary": "Short or long poll several topics and patterns",
            "description": "Gaps are reported in-band: one cursor covers every topic, so a gap "
                           "in one cannot be refused without stalling the others.",
            "parameters": [ref(p, "parameters") for p in ("Topics", "After", "Limit", "Wait")],
            "responses": {"200": json_answer(ref("Page"), "Messages and gaps after the cursor"),
                          **problems(400, 503)},
        },
    },
    "/v1/topics/{topic}/events": {
        "parameters": [ref("Topic", "parameters")],
        "get": {
            "summary": "Server-sent events for one topic (from the live end by default)",
            "parameters": [ref(p, "parameters")
                           for p in ("After", "LastEventID", "Client", "Info")],
            "responses": {"200": EVENTS, **problems(400, 503)},
        },
    },
    "/v1/events": {
        "get": {
            "summary": "Server-sent events over several topics and patterns",
            "parameters": [ref(p, "parameters")
                           for p in ("Topics", "After", "LastEventID", "Client", "Info")],
            "responses": {"200": EVENTS, **problems(400, 503)},
        },
    },
    "/v1/ws": {
        "get": {
            "summary": "WebSocket (RFC 6455 upgrade of this GET)",
            "description": "Subprotocols hubbub.v1.json (text frames) and hubbub.v1.msgpack "
                           "(binary frames); ops sub (also of a consumer group), unsub, pub, ack, "
                           "nack, extend, req, reply, ping.",
            "parameters": [
                {"name": "Upgrade", "in": "header", "required": True,
                 "schema": {"type": "string", "const": "websocket"}},
                {"name": "Sec-WebSocket-Protocol", "in": "header",
                 "schema": {"type": "string", "enum": ["hubbub.v1.json", "hubbub.v1.msgpack"]}},
            ],
            "responses": {"101": {"description": "Switching Protocols"},
                          **problems(400, 426, 429, 503)},
        },
    },
    "/v1/groups/{group}": {
        "parameters": [ref("Group", "parameters")],
        "get": {
            "summary": "Consumer group state",
            "responses": {"200": json_answer(ref("GroupInfo"), "The group"),
                          **problems(400, 403, 404)},
        },
        "delete": {
            "summary": "Delete a consumer group (admin credentials only)",
            "description": "Forgets the group's position and pending entries; its "
                           "dead-letter topic stays. Settling its leases then answers 404.",
            "responses": {"204": {"description": "Deleted"}, **problems(400, 403, 404)},
        },
    },
    "/v1/groups/{group}/pull": {
        "parameters": [ref("Group", "parameters")],
        "post": {
            "summary": "Lease messages of a consumer group (long poll with wait)",
            "description": "The first pull names the topics and creates the group at start "
                           "(default end: only messages stored from then on); later pulls may "
                           "omit topic or must name the same. Each message goes to one puller "
                           "at a time; unacked ones come back after their lease, up to the "
                           "namespace's max_deliver tries, then go to dlq.{group}.",
            "parameters": [
                {**PARAMETERS["Topics"], "required": False,
                 "description": "the group's topic names or patterns; repeat it"},
                {"name": "max", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 1}},
                ref("Wait", "parameters"),
                {"name": "lease", "in": "query", "description": "seconds each lease lasts",
                 "schema": {"type": "number", "minimum": 0.1, "maximum": 43200, "default": 30}},
                {"name": "start", "in": "query",
                 "description": "where a new group begins; ignored once it exists",
                 "schema": {"type": "string", "enum": ["start", "end"], "default": "end"}},
            ],
            "responses": {"200": json_answer(ref("Deliveries"), "Leased messages (maybe none)"),
                          **problems(400, 404, 409, 503)},
        },
    },
    **{f"/v1/groups/{{group}}/{action}": {
        "parameters": [ref("Group", "parameters")],
        "post": {
            "summary": summary,
            "description": "Each lease id is judged on its own. 200 when at least one was "
                           "settled (the others changed nothing); 409 with the same results "
                           "when none was; 400 (nothing changed) for malformed input.",
            "requestBody": {"required": True, "content": {JSON: {"schema": {
                "type": "object", "required": ["ids"], "additionalProperties": False,
                "properties": {"ids": ref("LeaseIds"), **extra}}}}},
            "responses": {"200": json_answer(ref("Outcomes"), "Each id's outcome"),
                          **problems(400, 404, 409, 413, 503)},
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
    "/v1/requests/{topic}": {"parameters": [ref("Topic", "parameters")], "post": {
        "summary": "Publish a request and wait for one reply (docs/requests.md)",
        "description": "Refused at once with 503 no-responders when no consumer group's "
                       "worker takes the topic (on any node); 502 responder-error when "
                       "the responder sent an error reply.",
        "parameters": [{"name": "timeout", "in": "query", "schema": {
            "type": "number", "exclusiveMinimum": 0, "maximum": 60, "default": 5}}],
        "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
        "responses": {"200": json_answer(ref("Message"), "The first reply"),
                      **problems(400, 413, 502, 503, 504)}}},
    "/v1/replies/{request}": {"parameters": [
        {"name": "request", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,15})\.[0-9a-f]{32}$"}}],
        "post": {
            "summary": "Reply to a request (only the first reply is stored)",
            "description": "With Content-Type application/vnd.hubbub.responder-error the "
                           "body (UTF-8 text, 1 to 1000 characters) is an error reply: "
                           "the caller gets 502 responder-error with it as detail.",
            "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
            "responses": {"201": json_answer(ref("Receipt"), "Stored for the caller"),
                          **problems(400, 404, 409, 410, 413, 503)}}},
    "/v1/topics/{topic}/presence": {"parameters": [ref("Topic", "parameters")], "get": {
        "summary": "Who is subscribed to the topic (namespaces with presence on)",
        "description": "WebSocket and SSE subscribers naming the topic exactly. Their joins "
                       "and leaves are messages on the topic presence.{topic} "
                       "(docs/presence.md).",
        "responses": {"200": json_answer(ref("Presence"), "The entries"),
                      **problems(400, 404, 503)}}},
}

PROBES: dict[str, Any] = {
    "/healthz": {"get": {"summary": "Liveness",
                         "responses": {"200": json_answer(ref("Status"), "The process answers")}}},
    "/readyz": {"get": {"summary": "Readiness", "responses": {
        "200": json_answer(ref("Status"), "The store answers"), **problems(503)}}},
    "/openapi.json": {"get": {"summary": "This document",
                              "responses": {"200": json_answer({"type": "object"}, "OpenAPI 3.1")}}},
}


__all__ = ["PATHS", "PROBES"]
