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
            "topic": {"type": "string", "maxLength": 255,
                      "pattern": r"^[A-Za-z0-9_\-:@]+(\.[A-Za-z0-9_\-:@]+)*$"},
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
    "HistoryPage": {
        "type": "object",
        "required": ["messages", "prev", "cursor"],
        "properties": {
            "messages": {"type": "array", "items": _ref("Message"),
                         "description": "the newest before the place, oldest first"},
            "prev": {"type": ["string", "null"],
                     "description": "pass as before= for the page before; null: nothing older"},
            "cursor": {"type": "string",
                       "description": "pass as after= to read on (from before=end: live)"},
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
    "PresenceEntry": {
        "type": "object",
        "required": ["conn", "client", "info", "since"],
        "properties": {
            "conn": {"type": "string", "description": "the connection's id, made by the hub"},
            "client": {"type": ["string", "null"], "maxLength": 64,
                       "description": "the id the client gave (client=), or null"},
            "info": {"description": "the JSON value the client gave (info=), or null"},
            "since": {"type": "integer", "description": "when it joined (ms since the "
                                                        "Unix epoch)"},
        },
    },
    "Presence": {
        "type": "object",
        "required": ["topic", "count", "present"],
        "properties": {
            "topic": {"type": "string"},
            "count": {"type": "integer", "minimum": 0},
            "present": {"type": "array", "items": _ref("PresenceEntry"), "maxItems": 1000,
                        "description": "sorted by conn"},
            "truncated": {"type": "boolean", "description": "present when there were more "
                                                            "than 1000"},
        },
    },
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

_SCHEMAS["Job"] = {
    "type": "object",
    "description": "A job as every door shows it (also the data of each message of the "
                   "topic jobs.{id}). Times are ms since the Unix epoch.",
    "required": ["id", "queue", "state", "version", "attempts", "max_attempts", "progress",
                 "message", "result", "error", "created", "updated", "finished"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "queue": {"type": "string"},
        "state": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "version": {"type": "integer", "minimum": 1,
                    "description": "grows by one per change; pass as version= to long-poll"},
        "attempts": {"type": "integer", "description": "tries so far (takes)"},
        "max_attempts": {"type": "integer"},
        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "message": {"type": ["string", "null"]},
        "result": {"description": "the worker's result (any JSON), once succeeded"},
        "error": {"type": ["string", "null"],
                  "description": "why it failed, or why the last attempt failed"},
        "created": {"type": "integer"},
        "updated": {"type": "integer"},
        "finished": {"type": ["integer", "null"]},
        "duplicate": {"type": "boolean",
                      "description": "submit only: the Idempotency-Key named an earlier job"},
    },
}
_SCHEMAS["TakenJob"] = {
    "description": "A job leased to the caller: the Job with its lease and data.",
    "allOf": [_ref("Job"), {
        "type": "object",
        "required": ["lease", "deadline", "data"],
        "properties": {
            "lease": {"type": "string", "description": "name it in progress, complete, fail"},
            "deadline": {"type": "integer", "description": "when the lease runs out (ms) "
                                                           "unless progress extends it"},
            "data": {"description": "the submitted data; base64 when content_type is given"},
            "content_type": {"type": "string"},
        },
    }],
}

_PARAMETERS: dict[str, Any] = {
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

_EVENTS = {
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


def _h(name: str, description: str, schema: dict[str, Any] | None = None,
       required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "required": required, "description": description,
            "schema": schema or {"type": "string"}}


def _ok(**members: Any) -> dict[str, Any]:
    return members


def _headers(**names: str) -> dict[str, Any]:
    return {name.replace("_", "-"): {"description": text, "schema": {"type": "string"}}
            for name, text in names.items()}


_UINT = {"type": "integer", "minimum": 0}
_TUS = _h("Tus-Resumable", "the protocol version", {"type": "string", "const": "1.0.0"}, True)
_OFFSET_STREAM = {"application/offset+octet-stream": {"schema": {
    "type": "string", "format": "binary"}}}
_UPLOAD_ID = {"name": "id", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
_CHECKSUM = _h("Upload-Checksum", "ALGORITHM BASE64-DIGEST of the body; sha1, md5, sha256, "
                                  "sha512")
_OPTIONS = {"options": {
    "summary": "tus capabilities (no Tus-Resumable needed)",
    "responses": {"204": {"description": "Version, extensions and limits", "headers": _headers(
        Tus_Version="1.0.0", Tus_Extension="creation, creation-with-upload, "
        "creation-defer-length, termination, checksum, expiration",
        Tus_Max_Size="largest upload in bytes ([uploads] max_size)",
        Tus_Checksum_Algorithm="sha1,md5,sha256,sha512")}}}}

_UPLOAD_PATHS: dict[str, Any] = {
    path: {**_OPTIONS, "post": {
        "summary": "Create a tus upload (creation, creation-with-upload, creation-defer-length)",
        "description": "See docs/uploads.md. A body (sent as application/offset+octet-stream) "
                       "is the upload's first bytes. Metadata key job names a job queue to "
                       "start on completion, if [uploads] jobs allows it. Progress is the "
                       "topic uploads.{id}.",
        "parameters": [
            _TUS, _h("Upload-Length", "the upload's size in bytes", _UINT),
            _h("Upload-Defer-Length", "1: the size is given by a later PATCH",
               {"type": "string", "const": "1"}),
            _h("Upload-Metadata", "comma-separated KEY BASE64-VALUE pairs"), _CHECKSUM],
        "requestBody": {"required": False, "content": _OFFSET_STREAM},
        "responses": {"201": _ok(description="Created", headers=_headers(
            Location="/v1/uploads/{id} (under the mount prefix, if any)",
            Upload_Offset="bytes stored (creation-with-upload)",
            Upload_Expires="when the unfinished upload expires (HTTP-date)")),
            **_problems(400, 412, 413, 415, 460, 503)}}}
    for path in ("/v1/uploads/", "/v1/uploads")
}
_UPLOAD_PATHS["/v1/uploads/{id}"] = {
    "parameters": [_UPLOAD_ID],
    **_OPTIONS,
    "head": {
        "summary": "Where a tus upload stands",
        "parameters": [_TUS],
        "responses": {"200": _ok(description="The upload", headers=_headers(
            Upload_Offset="bytes stored", Upload_Length="the size, once known",
            Upload_Defer_Length="1 while the size is not known",
            Upload_Metadata="as given at creation", Upload_Expires="HTTP-date, if unfinished")),
            **_problems(404, 410, 412)}},
    "patch": {
        "summary": "Append bytes to a tus upload at Upload-Offset",
        "parameters": [
            _TUS, _h("Upload-Offset", "must equal the upload's offset", _UINT, True),
            _h("Upload-Length", "the size, if it was deferred", _UINT), _CHECKSUM],
        "requestBody": {"required": True, "content": _OFFSET_STREAM},
        "responses": {"204": _ok(description="Stored", headers=_headers(
            Upload_Offset="the new offset", Upload_Expires="HTTP-date, if unfinished")),
            **_problems(400, 404, 409, 410, 412, 413, 415, 423, 460, 503)}},
    "delete": {
        "summary": "Remove a tus upload and its bytes (termination)",
        "parameters": [_TUS],
        "responses": {"204": _ok(description="Removed"), **_problems(404, 410, 412, 423)}},
    "get": {
        "summary": "The bytes of a completed upload (not part of tus)",
        "responses": {"200": _ok(description="The file", content={
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}),
            **_problems(404, 409, 410)}},
    "post": {
        "summary": "PATCH or DELETE for clients that cannot send them",
        "parameters": [_TUS, _h("X-HTTP-Method-Override", "the method meant",
                                {"type": "string", "enum": ["PATCH", "DELETE"]}, True)],
        "requestBody": {"required": False, "content": _OFFSET_STREAM},
        "responses": {"204": _ok(description="Done as PATCH or DELETE would"),
                      **_problems(400, 404, 409, 410, 412, 413, 415, 423, 460)}},
}

_JOB_ID = {"name": "id", "in": "path", "required": True,
           "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}
_QUEUE = {"name": "queue", "in": "path", "required": True,
          "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_\-:@]{1,59}$"}}
_LEASE_BODY = {"type": "string", "description": "the lease id the take answered"}
_JOB_REPORTS: list[tuple[str, str, list[str], dict[str, Any]]] = [
    ("progress", "Report progress and extend the lease (only lease: a heartbeat)", [], {
        "progress": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        "message": {"type": ["string", "null"], "maxLength": 1000}}),
    ("complete", "The job succeeded (repeating it with the same lease changes nothing)",
     [], {"result": {"description": "any JSON value"}}),
    ("fail", "The job failed; with retry it is queued again while attempts are left",
     ["error"], {
        "error": {"type": "string", "minLength": 1, "maxLength": 1000},
        "retry": {"type": "boolean", "default": False},
        "delay": {"type": "number", "minimum": 0, "maximum": 604800, "default": 0,
                  "description": "with retry: seconds before the job may be taken"}}),
]
_JOB_PATHS: dict[str, Any] = {
    "/v1/jobs/{queue}": {"parameters": [_QUEUE], "post": {
        "summary": "Submit a job (docs/jobs.md)",
        "description": "The body is the job's data (content types as for publishing). "
                       "Workers take it from the consumer group jobs-{queue}; its states are "
                       "the topic jobs.{id}.",
        "parameters": [{"name": "Idempotency-Key", "in": "header",
                        "schema": {"type": "string", "maxLength": 200}}],
        "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
        "responses": {"202": {**_json(_ref("Job"), "Accepted: queued (or the job an "
                                                   "Idempotency-Key named earlier)"),
                              "headers": _headers(Location="/v1/jobs/{id}")},
                      **_problems(400, 413, 503)}}},
    "/v1/jobs/{id}": {"parameters": [_JOB_ID], "get": {
        "summary": "A job's state; with wait, a long poll answering on its next change",
        "parameters": [
            _ref("Wait", "parameters"),
            {"name": "version", "in": "query",
             "description": "with wait: answer once the job's version is past this one "
                            "(default: its current one); a finished job answers at once",
             "schema": {"type": "integer", "minimum": 0}}],
        "responses": {"200": _json(_ref("Job"), "The job"), **_problems(400, 404, 503)}}},
    "/v1/jobs/{id}/events": {"parameters": [_JOB_ID], "get": {
        "summary": "Server-sent events of the job's states (the topic jobs.{id})",
        "description": "From the first state by default. Each message event carries a Job. "
                       "The stream ends with a close event after the final state; "
                       "reconnecting after it answers 204 (EventSource then stops).",
        "parameters": [_ref("After", "parameters"), _ref("LastEventID", "parameters")],
        "responses": {"200": _EVENTS, "204": {"description": "The job finished and every "
                                                             "state was read"},
                      **_problems(400, 404, 503)}}},
    "/v1/jobs/{queue}/take": {"parameters": [_QUEUE], "post": {
        "summary": "Take the next job of a queue (a worker; long poll with wait)",
        "parameters": [
            _ref("Wait", "parameters"),
            {"name": "lease", "in": "query", "description": "seconds the lease lasts "
                                                           "(default [jobs] lease)",
             "schema": {"type": "number", "minimum": 0.1, "maximum": 43200}}],
        "responses": {"200": _json(_ref("TakenJob"), "The job, now running"),
                      "204": {"description": "No job within wait"},
                      **_problems(400, 503)}}},
    **{f"/v1/jobs/{{id}}/{action}": {"parameters": [_JOB_ID], "post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {JSON: {"schema": {
            "type": "object", "required": ["lease", *required], "additionalProperties": False,
            "properties": {"lease": _LEASE_BODY, **props}}}}},
        "responses": {"200": _json(_ref("Job"), "The job after the change"),
                      **_problems(400, 404, 409, 413, 503)}}}
       for action, summary, required, props in _JOB_REPORTS},
}

# -- the admin API (transports/admin.py; admin principals only) -----------------

_SCHEMAS["Connection"] = {
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
_ADMIN_PATHS: dict[str, Any] = {
    "/v1/connections": {"get": {
        "summary": "Every WebSocket and SSE connection of the cluster",
        "description": _ADMIN + "Other nodes' connections are as fresh as their last "
                       "list (written at most every 0.5 s).",
        "responses": {"200": _json({"type": "object", "properties": {
            "count": {"type": "integer"},
            "connections": {"type": "array", "items": _ref("Connection")}}},
            "The connections, oldest first"), **_problems(401, 403, 503)}}},
    "/v1/connections/{id}": {"parameters": [_CONN_ID], "delete": {
        "summary": "Disconnect a connection, on whichever node holds it",
        "description": _ADMIN + "A WebSocket is closed with 4010 and a reason; an SSE "
                       "stream ends with a close event carrying the reason.",
        "responses": {"204": {"description": "Gone from the list"},
                      "202": {"description": "Ordered, not gone from the list yet"},
                      **_problems(400, 401, 403, 404, 503)}}},
    "/v1/topics/{topic}/purge": {"parameters": [_ref("Topic", "parameters")], "post": {
        "summary": "Remove every retained message of a topic (offsets go on)",
        "description": _ADMIN + "Readers whose cursor is older get a trimmed gap.",
        "responses": {"200": _json({"type": "object", "properties": {
            "topic": {"type": "string"}, "removed": {"type": "integer"}}}, "Purged"),
            **_problems(400, 401, 403, 404, 503)}}},
    "/v1/jobs/{id}/cancel": {"parameters": [_JOB_ID], "post": {
        "summary": "Cancel a job that is not finished",
        "description": _ADMIN + "Its worker's next report is refused with 409.",
        "responses": {"200": _json(_ref("Job"), "The cancelled job"),
                      **_problems(400, 401, 403, 404, 409, 503)}}},
    "/v1/presence": {"get": {
        "summary": "Every presence entry of every topic",
        "description": _ADMIN,
        "responses": {"200": _json({"type": "object", "properties": {
            "count": {"type": "integer"},
            "present": {"type": "array", "items": {"type": "object"}, "maxItems": 1000},
            "truncated": {"type": "boolean"}}}, "The entries"),
            **_problems(401, 403, 503)}}},
    "/v1/topics/{topic}/presence/{conn}": {"parameters": [
        _ref("Topic", "parameters"),
        {"name": "conn", "in": "path", "required": True, "schema": {"type": "string"}}],
        "delete": {
            "summary": "Drop a presence entry (a leave event with reason dropped)",
            "description": _ADMIN + "The node holding the connection stops renewing it.",
            "responses": {"204": {"description": "Dropped"},
                          **_problems(400, 401, 403, 404, 503)}}},
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
            # No body is an empty payload (bytes; JSON needs a value).
            "requestBody": {"required": False, "content": {"*/*": {"schema": {}}}},
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
            "responses": {"200": _json({"type": "object", "required": ["topics"], "properties": {
                "topics": {"type": "array", "items": _ref("TopicInfo")},
                "next": {"type": "string", "description": "the next page's URL"}}}, "Topics"),
                **_problems(400)},
        },
    },
    "/v1/topics/{topic}/messages": {
        "parameters": [_ref("Topic", "parameters")],
        "get": {
            "summary": "Short or long poll one topic; or, with before, read it from the end",
            "description": "With before=end or before=CURSOR (not with after or wait): the "
                           "limit newest messages before that place, oldest first, with "
                           "prev to page further back (null: nothing older is retained) "
                           "and cursor to read on, or follow live, from (docs/http.md).",
            "parameters": [_ref(p, "parameters") for p in ("After", "Before", "Limit", "Wait")],
            "responses": {"200": _json({"oneOf": [_ref("Page"), _ref("HistoryPage")]},
                                       "Messages after the cursor (or before, with before)"),
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
            "parameters": [_ref(p, "parameters")
                           for p in ("After", "LastEventID", "Client", "Info")],
            "responses": {"200": _EVENTS, **_problems(400, 503)},
        },
    },
    "/v1/events": {
        "get": {
            "summary": "Server-sent events over several topics and patterns",
            "parameters": [_ref(p, "parameters")
                           for p in ("Topics", "After", "LastEventID", "Client", "Info")],
            "responses": {"200": _EVENTS, **_problems(400, 503)},
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
                          **_problems(400, 426, 429, 503)},
        },
    },
    "/v1/groups/{group}": {
        "parameters": [_ref("Group", "parameters")],
        "get": {
            "summary": "Consumer group state",
            "responses": {"200": _json(_ref("GroupInfo"), "The group"),
                          **_problems(400, 403, 404)},
        },
        "delete": {
            "summary": "Delete a consumer group (admin credentials only)",
            "description": "Forgets the group's position and pending entries; its "
                           "dead-letter topic stays. Settling its leases then answers 404.",
            "responses": {"204": {"description": "Deleted"}, **_problems(400, 403, 404)},
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
        "description": "Refused at once with 503 no-responders when no consumer group's "
                       "worker takes the topic (on any node); 502 responder-error when "
                       "the responder sent an error reply.",
        "parameters": [{"name": "timeout", "in": "query", "schema": {
            "type": "number", "exclusiveMinimum": 0, "maximum": 60, "default": 5}}],
        "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
        "responses": {"200": _json(_ref("Message"), "The first reply"),
                      **_problems(400, 413, 502, 503, 504)}}},
    "/v1/replies/{request}": {"parameters": [
        {"name": "request", "in": "path", "required": True,
         "schema": {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,15})\.[0-9a-f]{32}$"}}],
        "post": {
            "summary": "Reply to a request (only the first reply is stored)",
            "description": "With Content-Type application/vnd.hubbub.responder-error the "
                           "body (UTF-8 text, 1 to 1000 characters) is an error reply: "
                           "the caller gets 502 responder-error with it as detail.",
            "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
            "responses": {"201": _json(_ref("Receipt"), "Stored for the caller"),
                          **_problems(400, 404, 409, 410, 413, 503)}}},
    "/v1/topics/{topic}/presence": {"parameters": [_ref("Topic", "parameters")], "get": {
        "summary": "Who is subscribed to the topic (namespaces with presence on)",
        "description": "WebSocket and SSE subscribers naming the topic exactly. Their joins "
                       "and leaves are messages on the topic presence.{topic} "
                       "(docs/presence.md).",
        "responses": {"200": _json(_ref("Presence"), "The entries"),
                      **_problems(400, 404, 503)}}},
    **_UPLOAD_PATHS,
    **_JOB_PATHS,
    **_ADMIN_PATHS,
    "/healthz": {"get": {"summary": "Liveness",
                         "responses": {"200": _json(_ref("Status"), "The process answers")}}},
    "/readyz": {"get": {"summary": "Readiness", "responses": {
        "200": _json(_ref("Status"), "The store answers"), **_problems(503)}}},
    "/openapi.json": {"get": {"summary": "This document",
                              "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
}

# Operations (docs/operations.md): metrics, statistics, the dashboard.
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_SCHEMAS["Stats"] = {
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
_PATHS.update({
    "/metrics": {"get": {
        "summary": "Prometheus metrics (docs/operations.md); admins only with auth on",
        "description": "Text format 0.0.4, or OpenMetrics when Accept asks for it.",
        "responses": {"200": {"description": "The metrics", "content": {
            "text/plain; version=0.0.4": {"schema": {"type": "string"}},
            "application/openmetrics-text; version=1.0.0": {"schema": {"type": "string"}}}}}}},
    "/v1/stats": {"get": {
        "summary": "This node's statistics as JSON (the dashboard reads it); admins only "
                   "with auth on",
        "responses": {"200": _json(_ref("Stats"), "The snapshot"), **_problems(503)}}},
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
            "text/css": {"schema": {"type": "string"}}}}, **_problems(404)}}},
})

# DELETE beside the topic's GET and POST (the admin API's).
_PATHS["/v1/topics/{topic}"]["delete"] = {
    "summary": "Delete a topic's log: its next message starts a new epoch at offset 1",
    "description": _ADMIN + "Readers of older cursors get an epoch gap (409 on polls); "
                   "live subscriptions naming the topic are ended with their cursors.",
    "responses": {"204": {"description": "Deleted"},
                  **_problems(400, 401, 403, 404, 503)}}

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


# Authentication (docs/auth.md): a bearer token (JWT or API key) in the
# Authorization header, or in ?token= where headers cannot be sent (EventSource,
# WebSocket). A hub with no [auth] lets everyone in: hence the empty alternative.
SPEC["components"]["securitySchemes"] = {
    "bearer": {"type": "http", "scheme": "bearer",
               "description": "A JWT (HS256, RS256, ES256, EdDSA) or an API key"},
    "token": {"type": "apiKey", "in": "query", "name": "token",
              "description": "The same token, for browsers' EventSource and WebSocket; "
                             "it appears in access logs, so keep such tokens short-lived"},
}
SPEC["security"] = [{"bearer": []}, {"token": []}, {}]
for _path, _item in _PATHS.items():
    for _method, _op in _item.items():
        if not isinstance(_op, dict) or "responses" not in _op:
            continue
        if (_path in ("/healthz", "/readyz", "/openapi.json", "/", "/dashboard/{name}")
                or _method == "options"):
            # Always open: probes, this document, the dashboard's files, CORS preflights.
            _op["security"] = []
        else:
            for _status in (401, 403):
                _op["responses"].setdefault(str(_status), _ref(f"P{_status}", "responses"))
        # Browser rules (docs/security.md): every route but the probes checks
        # the Host; writes and WebSocket upgrades check the Origin.
        if _path not in ("/healthz", "/readyz"):
            _op["responses"].setdefault("421", _ref("P421", "responses"))
        if _method in ("post", "put", "patch", "delete") or _path == "/v1/ws":
            _op["responses"].setdefault("403", _ref("P403", "responses"))


@functools.cache
def spec_json() -> bytes:
    """The spec as JSON bytes, encoded once."""
    return msgspec.json.encode(SPEC)
