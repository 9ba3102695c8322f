"""Request-reply over HTTP: ``POST /v1/requests/{topic}``, ``POST /v1/replies/{request}``.

The rules are in :mod:`hubbub.core.requests`; the protocol in ``docs/requests.md``.

* ``POST /v1/requests/{topic}?timeout=5`` publishes the body (content types as
  for ``POST /v1/topics/{topic}``) as a request envelope and answers ``200``
  with the reply *message object* (as every door shows messages, topic
  ``_inbox.…``), or ``504`` (``code`` ``timeout``) when no reply came in time.
  ``timeout`` defaults to 5 seconds, at most ``server.max_wait``, and is
  cut to what is left of the caller's token.
* ``POST /v1/replies/{request}`` stores the body as the reply to ``request``:
  ``201`` with the receipt; ``400`` for a malformed id, ``410`` after the
  deadline, ``404`` when nobody waits for it (never made, or its caller left),
  ``409`` when already answered. Nothing is stored in any of those.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..protocol.errors import InvalidRequest
from ..protocol.message import JSON, media_type
from ..protocol.topics import validate_topic
from .auth import Action, authorize, within_lifetime
from .httpkit import SECONDS_RE, hub_of, json_response, query_one, read_body, while_connected

DEFAULT_TIMEOUT = 5.0


def _timeout(request: Request, max_wait: float) -> float:
    text = query_one(request, "timeout")
    if text is None:
        return min(DEFAULT_TIMEOUT, max_wait)
    if SECONDS_RE.fullmatch(text) is None or not 0 < float(text) <= max_wait:
        raise InvalidRequest(
            f"timeout must be more than 0 and at most {max_wait:g} seconds", field="timeout")
    return float(text)


async def request(request: Request) -> Response:
    hub = hub_of(request)
    topic = validate_topic(request.path_params["topic"])
    principal = authorize(request, Action.PUBLISH, [topic])  # a request is a publish
    content_type = media_type(request.headers.get("content-type"), field="content-type")
    # A request waits no longer than its token lives (the caller could not
    # make another); it then ends as a timeout does.
    timeout = within_lifetime(hub, principal, _timeout(request, hub.config.server.max_wait))
    body = await read_body(request, hub.config.for_topic(topic).max_message_size)
    _, task = await while_connected(
        request, hub.requests.request(topic, body, content_type, timeout=timeout))
    if not task.done() or task.cancelled():
        return Response(status_code=204)  # the client left; nobody reads this answer
    return Response(task.result().to_json(), media_type=JSON)


async def reply(request: Request) -> Response:
    hub = hub_of(request)
    # No topic is checked: only readers of the request's topic learn its id,
    # which is unguessable, so the id is the capability (docs/auth.md).
    request_id = request.path_params["request"]
    content_type = media_type(request.headers.get("content-type"), field="content-type")
    body = await read_body(request, hub.config.max_message_size)
    m = await hub.requests.reply(request_id, body, content_type)
    return json_response(
        {"topic": m.topic, "offset": m.offset, "cursor": m.cursor, "id": m.id, "time": m.time},
        201)


routes: list[BaseRoute] = [
    Route("/v1/requests/{topic}", request, methods=["POST"]),
    Route("/v1/replies/{request}", reply, methods=["POST"]),
]
