"""The HTTP request-response and polling doors: publish, read, topic metadata.

Every endpoint parses its input, calls the :class:`~hubbub.core.Hub`, and
encodes the answer. Bad input raises a :mod:`hubbub.protocol.errors` exception, which
the application turns into an RFC 9457 problem document
(:mod:`hubbub.transports.problems`); nothing here picks an error status.

Decisions a client can rely on (also in the OpenAPI document):

* ``POST /v1/topics/{topic}`` stores the body as JSON when its media type is
  ``application/json`` or any ``*/*+json`` (the stored type is then
  ``application/json``), and as bytes with the ``Content-Type`` header kept
  otherwise, ``application/octet-stream`` when there is none. ``curl -d``
  sends ``application/x-www-form-urlencoded``, so it stores bytes; say
  ``-H 'Content-Type: application/json'`` to publish JSON.
* A first publish answers ``201``; a retry with the same ``Idempotency-Key``
  stores nothing and answers ``200`` with the first receipt plus
  ``"duplicate": true``.
* A query parameter given empty (``?after=``) counts as absent; one given
  twice is refused.
* ``GET /v1/topics/{topic}/messages`` answers ``409`` when history was lost
  past the cursor; the problem carries the lost range and a ``cursor`` to
  continue knowingly. ``GET /v1/messages`` cannot do that: one cursor covers
  many topics, and refusing it for one topic's gap would stall all the
  others, so gaps come in-band in ``"gaps"`` next to the messages.
* ``GET /v1/topics/{topic}/messages?before=end|CURSOR&limit=N`` reads
  backwards: the N messages before the place, oldest first, with ``prev`` to
  page further back (``null``: nothing older) and ``cursor`` to read on (or
  follow live) from; ``after`` or ``wait`` with it is refused
  (:mod:`hubbub.core.history`).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Annotated, Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..core import AppendResult, PublishItem
from ..core.history import read_before
from ..protocol.depth import check_depth
from ..protocol.errors import InvalidRequest, NotFound, Unavailable
from ..protocol.message import JSON, media_type
from ..protocol.topics import validate_topic
from .auth import Action, authorize, principal_of
from .httpkit import (
    header,
    hub_of,
    json_response,
    query_limit,
    query_one,
    query_topics,
    read_body,
    whole_json,
)
from .openapi import spec_json
from .polling import pages_of, poll_page

MAX_BATCH = 1000
#: A batch body may be this large, or twice the largest message, whichever is more.
MAX_BATCH_BODY = 16 << 20
#: Topics on one page of ``GET /v1/topics`` unless ``?limit=`` says (at most ``max_limit``).
TOPICS_PAGE = 1000

_encode = msgspec.json.Encoder().encode
_AT_RE = re.compile(r"(.*) - at `\$(.*)`", re.DOTALL)


class _BatchItem(msgspec.Struct, forbid_unknown_fields=True):
    topic: str
    data: msgspec.Raw
    key: str | None = None
    content_type: str | None = None


_decode_batch = msgspec.json.Decoder(
    Annotated[list[_BatchItem], msgspec.Meta(max_length=MAX_BATCH)]
).decode


def _receipt(result: AppendResult) -> dict[str, Any]:
    m = result.message
    out: dict[str, Any] = {
        "topic": m.topic, "offset": m.offset, "cursor": m.cursor, "id": m.id, "time": m.time,
    }
    if result.duplicate:
        out["duplicate"] = True
    return out


# -- publishing -------------------------------------------------------------------


async def publish(request: Request) -> Response:
    hub = hub_of(request)
    topic = validate_topic(request.path_params["topic"])
    principal = authorize(request, Action.PUBLISH, [topic])
    content_type = media_type(header(request, b"content-type"), field="content-type")
    key = header(request, b"idempotency-key")
    if key is not None and len(key) >= 2 and key[0] == key[-1] == '"':
        # draft-ietf-httpapi-idempotency-key-header: the key is a Structured
        # Field sf-string, i.e. quoted; bare keys (as Stripe's) are accepted too.
        key = key[1:-1]
    body = await read_body(request, hub.config.for_topic(topic).max_message_size)
    try:
        result = await hub.publish(topic, body, content_type, key, owner=principal.subject,
                                   limit_topics=True)
    except InvalidRequest as exc:
        if exc.field == "key":
            exc.field = "Idempotency-Key"
        raise
    return whole_json(request, _receipt(result), 200 if result.duplicate else 201)


def _batch_item(i: int, item: _BatchItem, owner: str | None) -> PublishItem:
    content_type = media_type(item.content_type, field=f"[{i}].content_type")
    if item.content_type is None or content_type == JSON:
        return PublishItem(item.topic, bytes(item.data), JSON, item.key, owner)
    text = msgspec.json.decode(item.data)
    if not isinstance(text, str):
        raise InvalidRequest("data must be a base64 string when content_type is not JSON",
                             field=f"[{i}].data")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("data is not valid base64", field=f"[{i}].data") from None
    return PublishItem(item.topic, data, content_type, item.key, owner)


async def publish_batch(request: Request) -> Response:
    hub = hub_of(request)
    # The body is read as JSON whatever its Content-Type says (curl -d sends
    # a form type): it either parses as the batch or is refused.
    limit = max(MAX_BATCH_BODY, 2 * hub.config.max_message_size)
    body = await read_body(request, limit)
    # Measured before decoding: the batch's list and items are two levels more.
    check_depth(body, hub.config.limits.json_depth + 2)
    try:
        raw = _decode_batch(body)
    except msgspec.ValidationError as exc:
        m = _AT_RE.fullmatch(str(exc))
        message, path = (m.group(1), m.group(2)) if m else (str(exc), "")
        message = message[:1].lower() + message[1:]
        raise InvalidRequest(message, field=path.lstrip(".") or "body") from None
    except msgspec.DecodeError:
        raise InvalidRequest("malformed JSON", field="body") from None
    # Every item is allowed, or nothing is stored (:mod:`hubbub.core.auth`,
    # invariant "a refused item refuses all").
    for i, item in enumerate(raw):
        authorize(request, Action.PUBLISH, [validate_topic(item.topic, field=f"[{i}].topic")],
                  field=f"[{i}].topic")
    owner = principal_of(request).subject
    items = [_batch_item(i, item, owner) for i, item in enumerate(raw)]
    results = await hub.publish_batch(items, limit_topics=True)
    return json_response({"results": [_receipt(r) for r in results]}, 201)


# -- reading ----------------------------------------------------------------------


async def topic_messages(request: Request) -> Response:
    topic = validate_topic(request.path_params["topic"])
    before = query_one(request, "before")
    if before is not None:
        return await _history(request, topic, before)
    return pages_of(request).response(await poll_page(request, [topic], single=True), gaps=False)


async def _history(request: Request, topic: str, before: str) -> Response:
    """``?before=end|CURSOR&limit=``: a page read backwards (:mod:`hubbub.core.history`)."""
    hub = hub_of(request)
    authorize(request, Action.SUBSCRIBE, [topic])
    for name in ("after", "wait"):
        if query_one(request, name) is not None:
            raise InvalidRequest(f"before reads back from a place; {name} does not apply",
                                 field=name)
    page = await read_before(hub.engine, topic, before,
                             query_limit(request, hub.config.server.max_limit))
    hub.metrics.poll.page(len(page.messages), [])
    return Response(b"".join((
        b'{"messages":[', b",".join(m.to_json() for m in page.messages),
        b'],"prev":', _encode(page.prev), b',"cursor":', _encode(page.cursor), b"}",
    )), media_type=JSON)


async def messages(request: Request) -> Response:
    got = await poll_page(request, query_topics(request), single=False)
    return pages_of(request).response(got, gaps=True)


async def list_topics(request: Request) -> Response:
    hub = hub_of(request)
    principal = principal_of(request)
    limit = query_limit(request, hub.config.server.max_limit, TOPICS_PAGE)
    after = query_one(request, "after")

    def allowed(topic: str) -> bool:  # only the topics it may read (names say things, too)
        return hub.auth.may(principal, Action.SUBSCRIBE, topic)

    pattern = query_one(request, "pattern")
    topics, last = await hub.list_topics(pattern, after=after, limit=limit,
                                         allowed=None if principal.admin else allowed)
    body: dict[str, Any] = {"topics": topics}
    response = json_response(body)
    if last is not None:
        # The next page: the same query, after the last topic of this one
        # (RFC 8288 "next" link, and the same in the body for clients that
        # read only JSON).
        params = {k: v for k, v in request.query_params.items() if k != "after"}
        params["after"] = last
        link = f"{request.scope.get('root_path', '')}/v1/topics?{urlencode(params)}"
        body["next"] = link
        response = json_response(body)
        response.headers["Link"] = f'<{link}>; rel="next"'
    return response


async def topic_info(request: Request) -> Response:
    authorize(request, Action.SUBSCRIBE, [request.path_params["topic"]])
    info = await hub_of(request).topic_info(request.path_params["topic"])
    if info is None:
        raise NotFound("no such topic", field="topic")
    return json_response(info)


# -- operations ---------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the store answers and the hub takes new work."""
    hub = hub_of(request)
    if hub.draining:
        raise Unavailable("hub is shutting down")
    await hub.ping()
    return json_response({"status": "ok"})


async def openapi(request: Request) -> Response:
    return Response(spec_json(), media_type=JSON)


routes: list[BaseRoute] = [
    Route("/v1/topics/{topic}", publish, methods=["POST"]),
    Route("/v1/topics/{topic}", topic_info, methods=["GET"]),
    Route("/v1/publish", publish_batch, methods=["POST"]),
    Route("/v1/topics", list_topics, methods=["GET"]),
    Route("/v1/topics/{topic}/messages", topic_messages, methods=["GET"]),
    Route("/v1/messages", messages, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
