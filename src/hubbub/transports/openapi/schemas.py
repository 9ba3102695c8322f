"""The schemas of what the publish, read, presence and group doors carry.
"""

from __future__ import annotations

from typing import Any

from .parts import ref

SCHEMAS: dict[str, Any] = {
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
            "messages": {"type": "array", "items": ref("Message")},
            "cursor": {"type": "string", "description": "pass as after= to go on"},
            "gaps": {"type": "array", "items": ref("Gap"),
                     "description": "multi-topic polls only: history lost on the way"},
        },
    },
    "HistoryPage": {
        "type": "object",
        "required": ["messages", "prev", "cursor"],
        "properties": {
            "messages": {"type": "array", "items": ref("Message"),
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
            "present": {"type": "array", "items": ref("PresenceEntry"), "maxItems": 1000,
                        "description": "sorted by conn"},
            "truncated": {"type": "boolean", "description": "present when there were more "
                                                            "than 1000"},
        },
    },
    "Delivery": {
        "description": "A message leased to the caller: the Message object with its lease.",
        "allOf": [ref("Message"), {
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
        "properties": {"messages": {"type": "array", "items": ref("Delivery")}},
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


__all__ = ["SCHEMAS"]
