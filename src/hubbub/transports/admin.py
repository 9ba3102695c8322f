"""The admin API: what operators do to a running cluster (admin principals only).

Every route here needs an admin principal (``docs/auth.md``: the ``admin``
claim of a JWT, ``admin = true`` on an API key, or any client of a hub with
authentication off); others get ``403`` (``401`` when anonymous). Each answers
for the whole cluster, whichever node it reaches (``docs/operations.md``):

* ``GET /v1/connections``: every WebSocket and SSE connection, with its door,
  subject, remote address, subscriptions and since when
  (:mod:`hubbub.core.connections`).
* ``DELETE /v1/connections/{id}``: close it on the node that holds it;
  ``204`` once it is gone from the list, ``202`` when it is not gone yet
  after a few seconds, ``404`` when no such connection is listed.
* ``POST /v1/topics/{topic}/purge``: remove every retained message (offsets
  go on); ``200`` ``{"topic", "removed"}``. ``DELETE /v1/topics/{topic}``:
  remove the log itself (a new epoch follows); ``204``
  (:mod:`hubbub.core.topics_admin`).
* ``POST /v1/jobs/{id}/cancel``: cancel a job that is not finished; ``200``
  with the cancelled job, ``409`` when it is already final.
* ``GET /v1/presence``: every presence entry of every topic;
  ``DELETE /v1/topics/{topic}/presence/{conn}``: drop one (``204``), with a
  ``leave`` event whose reason is ``dropped``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..core.topics_admin import delete, purge
from ..protocol.errors import Forbidden, NotFound, Unauthorized
from ..protocol.topics import validate_topic
from .auth import principal_of
from .httpkit import hub_of, json_response

#: Seconds a disconnect waits for the connection to be gone before it answers 202.
DISCONNECT_WAIT = 5.0
ADMIN_ONLY = "this is the admin API: it needs an admin token"


def authorize_admin(request: Request) -> None:
    """Refuse the request unless its principal is an admin.

    Raises:
        Unauthorized: no credentials (an anonymous client).
        Forbidden: a principal that is not an admin.
    """
    principal = principal_of(request)
    if not principal.admin:
        raise (Unauthorized if principal.anonymous else Forbidden)(ADMIN_ONLY)


async def connections(request: Request) -> Response:
    authorize_admin(request)
    listed = await hub_of(request).connections.list()
    return json_response({"count": len(listed), "connections": listed})


async def disconnect(request: Request) -> Response:
    authorize_admin(request)
    hub = hub_of(request)
    conn_id = request.path_params["id"]
    if await hub.connections.find(conn_id) is None:
        raise NotFound("no such connection", field="id")
    gone = await hub.connections.disconnect(conn_id, "disconnected by an admin",
                                            wait=DISCONNECT_WAIT)
    return Response(status_code=204 if gone else 202)


async def purge_topic(request: Request) -> Response:
    authorize_admin(request)
    topic = validate_topic(request.path_params["topic"])
    removed = await purge(hub_of(request), topic)
    return json_response({"topic": topic, "removed": removed})


async def delete_topic(request: Request) -> Response:
    authorize_admin(request)
    await delete(hub_of(request), validate_topic(request.path_params["topic"]))
    return Response(status_code=204)


async def cancel_job(request: Request) -> Response:
    authorize_admin(request)
    job = await hub_of(request).jobs.cancel(request.path_params["id"])
    return json_response(job.to_dict())


async def presence(request: Request) -> Response:
    authorize_admin(request)
    return json_response(await hub_of(request).presence.entries())


async def drop_presence(request: Request) -> Response:
    authorize_admin(request)
    topic = validate_topic(request.path_params["topic"])
    await hub_of(request).presence.drop(topic, request.path_params["conn"])
    return Response(status_code=204)


routes: list[BaseRoute] = [
    Route("/v1/connections", connections, methods=["GET"]),
    Route("/v1/connections/{id}", disconnect, methods=["DELETE"]),
    Route("/v1/topics/{topic}/purge", purge_topic, methods=["POST"]),
    Route("/v1/topics/{topic}", delete_topic, methods=["DELETE"]),
    Route("/v1/jobs/{id}/cancel", cancel_job, methods=["POST"]),
    Route("/v1/presence", presence, methods=["GET"]),
    Route("/v1/topics/{topic}/presence/{conn}", drop_presence, methods=["DELETE"]),
]
