"""What every part of the OpenAPI document uses: references, answers, problems,
parameters and the SSE stream.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
PROBLEM = "application/problem+json"


def ref(name: str, kind: str = "schemas") -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_answer(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def problems(*statuses: int) -> dict[str, Any]:
    return {str(s): ref(f"P{s}", "responses") for s in statuses}


STATUS_TEXT = {
    400: "Bad input: malformed body, query, topic, cursor, group name or lease id",
    401: "No credentials, or a token that is malformed, unknown, expired or forged "
         "(docs/auth.md); the answer carries WWW-Authenticate: Bearer",
    403: "The token does not allow this action on this topic (docs/auth.md); or a page "
         "on another origin, not in [server] cors_origins, sent a write or opened a "
         "WebSocket (docs/security.md)",
    404: "No such topic, group, job or route; a reply to a request nobody waits for "
         "(never made, or its caller left); presence is off for the topic's namespace",
    409: "History was lost past the cursor (the problem carries the range and a cursor "
         "to continue from knowingly); or a group exists for other topics; or no lease "
         "of a settle was settled (the problem carries each id's outcome in results); "
         "or a request was already answered; or a job's lease is not its lease (it ran "
         "out and the job was taken again) or the job is not running",
    410: "A reply after its request's deadline; nothing stored; or an upload that expired",
    412: "Tus-Resumable is missing or not 1.0.0 (the answer carries Tus-Version)",
    413: "Body larger than the namespace's max_message_size; or an upload over "
         "Tus-Max-Size or past its Upload-Length; or past [limits] upload_bytes (limit "
         "names the setting)",
    415: "An upload body not sent as application/offset+octet-stream",
    421: "The Host header names a host this hub does not serve: with authentication "
         "off, loopback names and [server] allowed_hosts only (docs/security.md)",
    423: "Another request is writing the same upload; retry (tus clients do)",
    426: "A plain GET of the WebSocket endpoint: upgrade to WebSocket (Upgrade: websocket)",
    429: "A [limits] setting is reached (limit names it): topics, topics per namespace, "
         "connections or subscriptions per principal",
    460: "The body does not match its Upload-Checksum; nothing stored",
    502: "The request's responder failed: the problem's detail is its message "
         "(code responder-error)",
    503: "The store cannot be reached or the hub is shutting down; retry later; or, for "
         "a request, no consumer group's worker takes its topic (code no-responders, "
         "answered at once, nothing published)",
    504: "No reply to the request within its timeout",
}

PARAMETERS: dict[str, Any] = {
    "Topic": {"name": "topic", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_\-:@]+(\.[A-Za-z0-9_\-:@]+)*$",
                         "maxLength": 255}},
    "Topics": {"name": "topic", "in": "query", "required": True, "explode": True,
               "description": "topic names or patterns (* one token, > the rest); repeat it",
               "schema": {"type": "array", "items": {"type": "string", "minLength": 1},
                          "maxItems": 100}},
    "After": {"name": "after", "in": "query",
              "description": "a cursor, or start or end; empty counts as absent",
              "schema": {"type": "string"}},
    "Before": {"name": "before", "in": "query",
               "description": "end, or a cursor of the topic (a page's prev): read the "
                              "messages before it, newest page first",
               "schema": {"type": "string"}},
    "IdempotencyKey": {"name": "Idempotency-Key", "in": "header",
                       "schema": {"type": "string", "maxLength": 200}},
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
    "Client": {"name": "client", "in": "query",
               "description": "presence: who this subscriber is, on topics whose namespace "
                              "has presence on (docs/presence.md)",
               "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
    "Info": {"name": "info", "in": "query",
             "description": "presence: JSON text about this subscriber, at most 1024 bytes",
             "schema": {"type": "string"}},
}

EVENTS = {
    "description": "text/event-stream (WHATWG HTML, server-sent events). First retry: 2000, "
                   "then an event ready (id: the resume cursor), then message events (id: the "
                   "message cursor, data: a Message), gap events (data: a Gap), comments every "
                   "heartbeat seconds of silence; error (slow consumer) or close (hub shutting "
                   "down) end the stream with the cursor to resume from.",
    # Each event of the stream, as its fields (WHATWG HTML §9.2.6); data is the
    # JSON text of a Message, Gap or the ready/error/close object.
    "content": {"text/event-stream": {"schema": {
        "type": "object",
        "properties": {"event": {"type": "string"}, "data": {"type": "string"},
                       "id": {"type": "string"}, "retry": {"type": "integer", "minimum": 0}},
    }}},
}


def header_param(name: str, description: str, schema: dict[str, Any] | None = None,
       required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def ok(**members: Any) -> dict[str, Any]:
    return members


def headers_of(**names: str) -> dict[str, Any]:
    return {name.replace("_", "-"): {"description": text, "schema": {"type": "string"}}
            for name, text in names.items()}


__all__ = ["EVENTS", "JSON", "PARAMETERS", "PROBLEM", "STATUS_TEXT", "header_param", "headers_of", "json_answer", "ok", "problems", "ref"]
