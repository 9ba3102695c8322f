"""The jobs door (``/v1/jobs``; docs/jobs.md).
"""

from __future__ import annotations

from typing import Any

from .parts import EVENTS, JSON, headers_of, json_answer, problems, ref

SCHEMAS: dict[str, Any] = {}
SCHEMAS["Job"] = {
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
SCHEMAS["TakenJob"] = {
    "description": "A job leased to the caller: the Job with its lease and data.",
    "allOf": [ref("Job"), {
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

JOB_ID = {"name": "id", "in": "path", "required": True,
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
PATHS: dict[str, Any] = {
    "/v1/jobs/{queue}": {"parameters": [_QUEUE], "post": {
        "summary": "Submit a job (docs/jobs.md)",
        "description": "The body is the job's data (content types as for publishing). "
                       "Workers take it from the consumer group jobs-{queue}; its states are "
                       "the topic jobs.{id}.",
        "parameters": [ref("IdempotencyKey", "parameters")],
        "requestBody": {"required": True, "content": {"*/*": {"schema": {}}}},
        "responses": {"202": {**json_answer(ref("Job"), "Accepted: queued (or the job an "
                                                   "Idempotency-Key named earlier)"),
                              "headers": headers_of(Location="/v1/jobs/{id}")},
                      **problems(400, 413, 503)}}},
    "/v1/jobs/{id}": {"parameters": [JOB_ID], "get": {
        "summary": "A job's state; with wait, a long poll answering on its next change",
        "parameters": [
            ref("Wait", "parameters"),
            {"name": "version", "in": "query",
             "description": "with wait: answer once the job's version is past this one "
                            "(default: its current one); a finished job answers at once",
             "schema": {"type": "integer", "minimum": 0}}],
        "responses": {"200": json_answer(ref("Job"), "The job"), **problems(400, 404, 503)}}},
    "/v1/jobs/{id}/events": {"parameters": [JOB_ID], "get": {
        "summary": "Server-sent events of the job's states (the topic jobs.{id})",
        "description": "From the first state by default. Each message event carries a Job. "
                       "The stream ends with a close event after the final state; "
                       "reconnecting after it answers 204 (EventSource then stops).",
        "parameters": [ref("After", "parameters"), ref("LastEventID", "parameters")],
        "responses": {"200": EVENTS, "204": {"description": "The job finished and every "
                                                             "state was read"},
                      **problems(400, 404, 503)}}},
    "/v1/jobs/{queue}/take": {"parameters": [_QUEUE], "post": {
        "summary": "Take the next job of a queue (a worker; long poll with wait)",
        "parameters": [
            ref("Wait", "parameters"),
            {"name": "lease", "in": "query", "description": "seconds the lease lasts "
                                                           "(default [jobs] lease)",
             "schema": {"type": "number", "minimum": 0.1, "maximum": 43200}}],
        "responses": {"200": json_answer(ref("TakenJob"), "The job, now running"),
                      "204": {"description": "No job within wait"},
                      **problems(400, 503)}}},
    **{f"/v1/jobs/{{id}}/{action}": {"parameters": [JOB_ID], "post": {
        "summary": summary,
        "requestBody": {"required": True, "content": {JSON: {"schema": {
            "type": "object", "required": ["lease", *required], "additionalProperties": False,
            "properties": {"lease": _LEASE_BODY, **props}}}}},
        "responses": {"200": json_answer(ref("Job"), "The job after the change"),
                      **problems(400, 404, 409, 413, 503)}}}
       for action, summary, required, props in _JOB_REPORTS},
}


__all__ = ["JOB_ID", "PATHS", "SCHEMAS"]
