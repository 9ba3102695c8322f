"""The jobs doors over HTTP: submit, poll, long poll, follow by SSE, and the worker's side.

The rules are in :mod:`hubbub.protocol.jobstate` and :mod:`hubbub.core.jobs`; the
protocol in ``docs/jobs.md``. This module parses, calls ``hub.jobs``, encodes.

Decisions a client can rely on:

* ``POST /v1/jobs/{queue}`` stores the body as the job's data (content types
  as for ``POST /v1/topics/{topic}``) and answers ``202`` with ``Location:
  /v1/jobs/{id}`` and the job. A retry with the same ``Idempotency-Key``
  answers ``202`` with the same job plus ``"duplicate": true``.
* Every job answer is the job as every door shows it: ``{id, queue, state,
  version, attempts, max_attempts, progress, message, result, error, created,
  updated, finished}``; the topic ``jobs.{id}`` carries the same objects.
* ``GET /v1/jobs/{id}?wait=S`` answers as soon as the job changes (its
  ``version`` passes the current one, or ``version=N`` when given), at once
  when it is finished, else after ``S`` seconds with the job as it is.
* ``GET /v1/jobs/{id}/events`` is the SSE stream of ``jobs.{id}`` from its
  start (or ``Last-Event-ID``/``after``). It ends, with a ``close`` event,
  after the final state; reconnecting after that answers ``204``, which tells
  an ``EventSource`` to stop (WHATWG HTML, 9.2: "a client can be told to stop
  reconnecting using the HTTP 204 No Content response code").
* ``POST /v1/jobs/{queue}/take?wait=&lease=`` answers ``200`` with the job,
  its ``lease``, ``deadline`` and ``data`` (base64 plus ``content_type`` for
  non-JSON data), or ``204`` when no job came within ``wait``.
* ``progress``, ``complete`` and ``fail`` take a JSON body naming the
  ``lease``. A lease that is not the job's (it ran out and the job was taken
  again, or the job is finished) is ``409`` and changes nothing.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..core import Gap
from ..core.jobs import check_id, queue_topic, status_topic
from ..protocol import wire
from ..protocol.depth import check_depth
from ..protocol.errors import HubbubError, InvalidCursor, InvalidRequest
from ..protocol.jobstate import FINAL, Job
from ..protocol.message import JSON, Message, media_type
from .auth import Action, authorize
from .httpkit import (
    SECONDS_RE,
    hub_of,
    json_response,
    query_one,
    query_wait,
    read_body,
    while_connected,
)
from .sse import EventStream

#: A worker's report is small: a lease, a percentage, a text, an error.
MAX_REPORT_BODY = 16 << 10
MAX_VERSION = 10**15


class _Progress(msgspec.Struct, forbid_unknown_fields=True):
    lease: str
    progress: float | None = None
    message: str | None = None


class _Complete(msgspec.Struct, forbid_unknown_fields=True):
    lease: str
    result: msgspec.Raw = msgspec.Raw(b"null")


class _Fail(msgspec.Struct, forbid_unknown_fields=True):
    lease: str
    error: str
    retry: bool = False
    delay: float = 0.0


def _job_response(job: Job, status: int = 200, **extra: Any) -> Response:
    return json_response({**job.to_dict(), **extra}, status)


def _id(request: Request) -> str:
    return check_id(request.path_params["id"])


async def _body(request: Request, kind: type[Any], limit: int) -> Any:
    body = await read_body(request, limit)
    # A result is one level into its report (checked before decoding).
    check_depth(body, hub_of(request).config.limits.json_depth + 1)
    try:
        return msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        err = wire.explain(exc)
        err.field = err.field or "body"
        raise err from None
    except msgspec.DecodeError:
        raise InvalidRequest("malformed JSON", field="body") from None


# -- the caller's side ----------------------------------------------------------------


async def submit(request: Request) -> Response:
    hub = hub_of(request)
    queue = request.path_params["queue"]
    # Submitting is publishing to the queue's topic (docs/auth.md).
    principal = authorize(request, Action.PUBLISH, [queue_topic(queue)])
    content_type = media_type(request.headers.get("content-type"), field="content-type")
    key = request.headers.get("idempotency-key")
    if key is not None and len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]  # a Structured Field sf-string, as for publishes
    body = await read_body(request, hub.config.max_message_size)
    try:
        job, made = await hub.jobs.enqueue(queue, body, content_type, key=key,
                                           owner=principal.subject)
    except InvalidRequest as exc:
        if exc.field == "key":
            exc.field = "Idempotency-Key"
        raise
    if made:
        response = _job_response(job, 202)
    elif hub.auth.may(principal, Action.SUBSCRIBE, status_topic(job.id)):
        response = _job_response(job, 202, duplicate=True)
    else:
        # Keys are scoped to their owner, so this is the caller's own job; still,
        # a principal that may only submit learns no more than the job's id.
        response = json_response({"id": job.id, "queue": job.queue, "duplicate": True}, 202)
    # An absolute path, under the mount prefix if any (as uploads' Location).
    response.headers["Location"] = f"{request.scope.get('root_path', '')}/v1/jobs/{job.id}"
    return response


def _version(request: Request) -> int | None:
    text = query_one(request, "version")
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or int(text) > MAX_VERSION:
        raise InvalidRequest("version must be a non-negative integer", field="version")
    return int(text)


async def get(request: Request) -> Response:
    hub = hub_of(request)
    job_id = _id(request)
    authorize(request, Action.SUBSCRIBE, [status_topic(job_id)])
    wait = query_wait(request, hub.config.server.max_wait)
    version = _version(request)
    if wait == 0:
        return _job_response(await hub.jobs.get(job_id))
    left, task = await while_connected(request, hub.jobs.wait(job_id, version=version, timeout=wait))
    if not task.done() or task.cancelled():
        return Response(status_code=204)  # the client left; nobody reads this answer
    return _job_response(task.result())


class JobEvents(EventStream):
    """The SSE stream of one job's states; it ends after the final state."""

    # The base's is a staticmethod; called on the instance, both take the same arguments.
    def _encode_batch(  # type: ignore[override]
        self, batch: list[Message | Gap], before: str
    ) -> bytes:
        out = EventStream._encode_batch(batch, before)
        if any(isinstance(e, Message) and _is_final(e) for e in batch):
            self.sub.close()  # the stream then ends with a close event
        return out


def _is_final(message: Message) -> bool:
    try:
        state = msgspec.json.decode(message.data).get("state")
    except (msgspec.DecodeError, AttributeError):
        return False
    return any(state == s.value for s in FINAL)


async def events(request: Request) -> Response:
    hub = hub_of(request)
    job_id = _id(request)
    principal = authorize(request, Action.SUBSCRIBE, [status_topic(job_id)])
    job = await hub.jobs.get(job_id)
    after = query_one(request, "after")
    last_id = request.headers.get("last-event-id") or None
    topic = status_topic(job_id)
    if job.final and (last_id or after):
        # Nothing more will come once the final state was read: say "stop".
        try:
            page = await hub.poll([topic], last_id or after, limit=1)
        except InvalidCursor as exc:
            if last_id is not None:
                exc.field = "Last-Event-ID"
            raise
        if not page.messages and not page.gaps:
            return Response(status_code=204)
    try:
        sub = await hub.subscribe([topic], last_id or after, default="start")
    except InvalidCursor as exc:
        if last_id is not None:
            exc.field = "Last-Event-ID"
        raise
    return JobEvents(sub, hub.config.server.heartbeat, lifetime=hub.auth.lifetime(principal))


# -- the worker's side ----------------------------------------------------------------


def _lease(request: Request) -> float | None:
    text = query_one(request, "lease")
    if text is None:
        return None  # [jobs] lease
    if SECONDS_RE.fullmatch(text) is None:
        raise InvalidRequest("lease must be a number of seconds", field="lease")
    return float(text)  # the core checks the range


async def take(request: Request) -> Response:
    hub = hub_of(request)
    queue = request.path_params["queue"]
    # Taking is consuming the queue's topic; a worker's reports that follow
    # need no check of their own: the job id and lease are the capability.
    authorize(request, Action.SUBSCRIBE, [queue_topic(queue)])
    wait = query_wait(request, hub.config.server.max_wait)
    lease = _lease(request)
    left, task = await while_connected(request, hub.jobs.take(queue, wait=wait, lease=lease))
    if not task.done() or task.cancelled():
        return Response(status_code=204)
    taken = task.result()
    if taken is None:
        return Response(status_code=204)
    if left:
        # The worker left as the job was taken: give it back at once.
        with contextlib.suppress(HubbubError):
            await hub.jobs.fail(taken.job.id, taken.lease, "the worker went away", retry=True)
        return Response(status_code=204)
    extra: dict[str, Any] = {"lease": taken.lease, "deadline": taken.deadline}
    if taken.content_type == JSON:
        extra["data"] = msgspec.Raw(taken.data)
    else:
        extra["content_type"] = taken.content_type
        extra["data"] = base64.b64encode(taken.data).decode()
    return _job_response(taken.job, **extra)


async def progress(request: Request) -> Response:
    hub = hub_of(request)
    job_id = _id(request)
    body = await _body(request, _Progress, MAX_REPORT_BODY)
    job, deadline = await hub.jobs.progress(job_id, body.lease, body.progress, body.message)
    return _job_response(job, deadline=deadline)


async def complete(request: Request) -> Response:
    hub = hub_of(request)
    job_id = _id(request)
    body = await _body(request, _Complete, hub.config.max_message_size + MAX_REPORT_BODY)
    result = msgspec.json.decode(body.result)
    return _job_response(await hub.jobs.complete(job_id, body.lease, result))


async def fail(request: Request) -> Response:
    hub = hub_of(request)
    job_id = _id(request)
    body = await _body(request, _Fail, MAX_REPORT_BODY)
    return _job_response(await hub.jobs.fail(job_id, body.lease, body.error, retry=body.retry,
                                             delay=body.delay))


routes: list[BaseRoute] = [
    Route("/v1/jobs/{queue}", submit, methods=["POST"]),
    Route("/v1/jobs/{id}", get, methods=["GET"]),
    Route("/v1/jobs/{id}/events", events, methods=["GET"]),
    Route("/v1/jobs/{queue}/take", take, methods=["POST"]),
    Route("/v1/jobs/{id}/progress", progress, methods=["POST"]),
    Route("/v1/jobs/{id}/complete", complete, methods=["POST"]),
    Route("/v1/jobs/{id}/fail", fail, methods=["POST"]),
]
