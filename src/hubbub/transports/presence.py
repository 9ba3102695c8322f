"""Presence over HTTP: ``GET /v1/topics/{topic}/presence``.

The rules are in :mod:`hubbub.core.presence`; the protocol in ``docs/presence.md``.
Answers ``200 {topic, count, present: [{conn, client, info, since}, ...]}``
(``truncated`` when there were more than 1000 entries), ``404`` when the
topic's namespace has presence off, ``400`` for a malformed topic name.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from .auth import Action, authorize
from .httpkit import hub_of, json_response


async def presence(request: Request) -> Response:
    # Who reads a topic's presence must be allowed to read the topic.
    authorize(request, Action.SUBSCRIBE, [request.path_params["topic"]])
    return json_response(await hub_of(request).presence.present(request.path_params["topic"]))


routes: list[BaseRoute] = [
    Route("/v1/topics/{topic}/presence", presence, methods=["GET"]),
]
