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

import asyncio
import base64
import binascii
import contextlib
import re
from collections.abc import Awaitable
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..core import Hub, Page, PublishItem
from ..core.auth import Principal
from ..core.history import read_before
from ..core.metrics import DoorCounts
from ..core.polls import Answer
from ..engines.base import AppendResult
from ..protocol.depth import check_depth
from ..protocol.errors import HubbubError, InvalidRequest, NotFound, PayloadTooLarge, Unavailable
from ..protocol.message import JSON, media_type
from ..protocol.topics import validate_topic
from .auth import KEY, Action, authorize, principal_of, within_lifetime
from .extensions import Responder, responder
from .openapi import spec_json

_T = TypeVar("_T")

MAX_BATCH = 1000
#: A batch body may be this large, or twice the largest message, whichever is more.
MAX_BATCH_BODY = 16 << 20
DEFAULT_LIMIT = 100
#: Topics on one page of ``GET /v1/topics`` unless ``?limit=`` says (at most ``max_limit``).
TOPICS_PAGE = 1000

_encode = msgspec.json.Encoder().encode
UINT_RE = re.compile(r"[0-9]{1,9}")
#: A number of seconds as a query gives it: JSON Schema's "number" (OpenAPI
#: clients may write 0.1234567 or 1e-05); callers check the range.
SECONDS_RE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,20})?(?:[eE][-+]?[0-9]{1,2})?")
_AT_RE = re.compile(r"(.*) - at `\$(.*)`", re.DOTALL)


class _BatchItem(msgspec.Struct, forbid_unknown_fields=True):
    topic: str
    data: msgspec.Raw
    key: str | None = None
    content_type: str | None = None


_decode_batch = msgspec.json.Decoder(
    Annotated[list[_BatchItem], msgspec.Meta(max_length=MAX_BATCH)]
).decode


# -- helpers shared with the SSE door ------------------------------------------


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def query_one(request: Request, name: str) -> str | None:
    """A single-valued query parameter; empty counts as absent.

    Raises:
        InvalidRequest: the parameter is given more than once.
    """
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidRequest(f"{name} is given more than once", field=name)
    return values[0] if values and values[0] else None


def query_topics(request: Request) -> list[str]:
    """The repeated ``topic`` parameter (validated later by the hub)."""
    return request.query_params.getlist("topic")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(_encode(body), status, media_type=JSON)


def _limit(request: Request, max_limit: int, default: int = DEFAULT_LIMIT) -> int:
    text = query_one(request, "limit")
    if text is None:
        return min(default, max_limit)
    if UINT_RE.fullmatch(text) is None or not 1 <= int(text) <= max_limit:
        raise InvalidRequest(f"limit must be an integer from 1 to {max_limit}", field="limit")
    return int(text)


def query_wait(request: Request, max_wait: float) -> float:
    """``?wait=`` in seconds, cut to what is left of the request's token: a
    waiting request ends, answered as its wait would, when its credential
    expires (the next one is refused with 401)."""
    text = query_one(request, "wait")
    if text is None:
        return 0.0
    if SECONDS_RE.fullmatch(text) is None or float(text) > max_wait:
        raise InvalidRequest(f"wait must be a number of seconds from 0 to {max_wait:g}",
                             field="wait")
    principal: Principal | None = request.scope.get(KEY)  # once authenticated
    return within_lifetime(hub_of(request), principal, float(text))


def _receipt(result: AppendResult) -> dict[str, Any]:
    m = result.message
    out: dict[str, Any] = {
        "topic": m.topic, "offset": m.offset, "cursor": m.cursor, "id": m.id, "time": m.time,
    }
    if result.duplicate:
        out["duplicate"] = True
    return out


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"body is larger than {limit} bytes", field="body")


def header(request: Request, name: bytes) -> str | None:
    """The first value of the (lower-case) header ``name``; cheaper than building
    ``request.headers`` for a header or two."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes.

    The declared ``Content-Length`` is checked before reading anything; the
    stream is checked as it comes, so a lying or chunked client costs at most
    ``limit`` bytes of memory. Read from ``receive`` directly: a body is most
    often one message.
    """
    declared = header(request, b"content-length") or ""
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect
            raise InvalidRequest("client went away before the body ended", field="body")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            break
        chunks.append(chunk)
    if not chunks:
        return chunk
    chunks.append(chunk)
    return b"".join(chunks)


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


def whole_json(request: Request, obj: Any, status: int = 200) -> Response:
    """A JSON response, written whole at once where the server offers
    ``hubbub.respond`` (:mod:`hubbub.server.whole`: one write, no ASGI events)."""
    body = _encode(obj)
    respond = responder(request.scope)
    if respond is not None and respond.respond(request.scope, status, _JSON_HEADERS, body):
        return _SENT
    return Response(body, status, media_type=JSON)


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
    # Every item is allowed, or nothing is stored (Rule 7 of hubbub.core.auth).
    for i, item in enumerate(raw):
        authorize(request, Action.PUBLISH, [validate_topic(item.topic, field=f"[{i}].topic")],
                  field=f"[{i}].topic")
    owner = principal_of(request).subject
    items = [_batch_item(i, item, owner) for i, item in enumerate(raw)]
    results = await hub.publish_batch(items, limit_topics=True)
    return json_response({"results": [_receipt(r) for r in results]}, 201)


# -- reading ----------------------------------------------------------------------


async def until_disconnect(request: Request) -> None:
    with contextlib.suppress(Exception):  # a broken receive means gone, too
        while (await request.receive())["type"] != "http.disconnect":
            pass


async def while_connected(
    request: Request, call: Awaitable[_T]
) -> tuple[bool, asyncio.Future[_T]]:
    """Run ``call`` while watching the socket; ``(client left, its task)``.

    Starlette does not watch the socket during a plain endpoint; without this
    a client that hung up would keep a waiting call (a long poll, a pull, a
    request) and its subscription for the whole wait. If the client leaves
    first the task is cancelled (the call closes what it holds as it
    unwinds) and is not done when this returns.
    """
    task = asyncio.ensure_future(call)
    gone = asyncio.ensure_future(until_disconnect(request))
    try:
        await asyncio.wait((task, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        left = gone.done()
        gone.cancel()
        if not task.done():
            task.cancel()
    return left, task


async def _poll(request: Request, patterns: list[str], *, single: bool) -> Page | Response:
    """Run ``hub.poll``; a long poll ends early (and quietly) if the client leaves.

    Returns the page to send, or (a long poll on ``hubbub serve``) the
    response already written.
    """
    hub = hub_of(request)
    authorize(request, Action.SUBSCRIBE, patterns)
    server = hub.config.server
    after = query_one(request, "after")
    limit = _limit(request, server.max_limit)
    wait = query_wait(request, server.max_wait)
    if wait == 0:
        page = await hub.poll(patterns, after, limit=limit, raise_gap=single)
        hub.metrics.poll.page(len(page.messages), page.gaps)
        return page
    respond = responder(request.scope)
    if respond is not None:
        return await _wait_together(hub, request.scope, respond, patterns, after, limit, wait,
                                    single)
    call = hub.poll(patterns, after, limit=limit, wait=wait, raise_gap=single)
    counts = hub.metrics.longpoll
    counts.open += 1
    try:
        _, poll = await while_connected(request, call)
    finally:
        counts.open -= 1
    if not poll.done():
        return Page([], after or "")  # the client left; nobody reads this answer
    page = poll.result()
    counts.page(len(page.messages), page.gaps)
    return page


async def _wait_together(
    hub: Hub, scope: Scope, respond: Responder, patterns: list[str], after: str | None,
    limit: int, wait: float, single: bool,
) -> Page | Response:
    """A long poll on ``hubbub serve``: wait with the others at the same
    position (:mod:`hubbub.core.polls`), answered by one read and one encoded
    page, written whole (:mod:`hubbub.server.whole`), with no task per poll.
    """
    got = await hub.poll_now(patterns, after, limit=limit, raise_gap=single)
    counts = hub.metrics.longpoll
    if isinstance(got, Page):
        counts.page(len(got.messages), got.gaps)
        return got
    cursor = got.cursor
    loop = asyncio.get_running_loop()
    poll = _WaitingPoll(respond, scope, loop.create_future(), counts, single)
    done = poll.done

    def time_up() -> None:
        member.leave()
        poll(Page([], cursor))

    def gone() -> None:
        member.leave()
        timer.cancel()
        if not done.done():
            done.set_result(Page([], cursor))  # nobody reads this answer

    member = hub.polls.wait(got, limit, poll, _answer_crowd)
    timer = loop.call_later(wait, time_up)
    if not respond.watch(scope, gone):
        gone()  # the client left while the poll read
    counts.open += 1
    try:
        result = await done
    finally:
        counts.open -= 1
        member.leave()
        timer.cancel()
        respond.watch(scope, None)
    if result is None:  # the group could not say it: read from the same position
        page = await hub.poll(patterns, cursor, limit=limit, raise_gap=single)
        counts.page(len(page.messages), page.gaps)
        return page
    return result


class _WaitingPoll:
    """A long poll waiting in a group: where its answer goes, and ``done``, the
    future its request waits on. Called with its answer (:data:`Answer
    <hubbub.core.polls.Answer>`); answered once, whatever comes later (the
    timer and the watch end when the request's coroutine resumes)."""

    __slots__ = ("respond", "scope", "done", "counts", "single", "answered")

    def __init__(self, respond: Responder, scope: Scope,
                 done: asyncio.Future[Page | Response | None], counts: DoorCounts,
                 single: bool) -> None:
        self.respond = respond
        self.scope = scope
        self.done = done
        self.counts = counts
        self.single = single
        self.answered = False

    def __call__(self, page: Page | HubbubError | None) -> None:
        if page is None or isinstance(page, HubbubError):
            if not self.answered and not self.done.done():
                self.answered = True
                if page is None:
                    self.done.set_result(None)  # read again (polls.py Rule 3)
                else:
                    self.done.set_exception(page)  # the live feed failed (Rule 3)
        else:
            _answer_crowd(page, [self])


def _answer_crowd(page: Page, answers: list[Answer]) -> None:
    """Answer long polls that got ``page`` (a group's: polls.py Rule 5): one
    encoded body, and every write before any follow-up
    (:func:`~hubbub.server.whole.respond_all`); a poll that cannot take a whole
    response now gets the page to send through ASGI."""
    by_route: tuple[list[_WaitingPoll], list[_WaitingPoll]] = ([], [])
    for poll in cast(list[_WaitingPoll], answers):  # this door's polls only
        if not poll.answered and not poll.done.done():  # its client may have left
            poll.answered = True
            by_route[poll.single].append(poll)
    n, gaps = len(page.messages), page.gaps
    for single in (False, True):  # the two routes' bodies differ ("gaps")
        crowd = by_route[single]
        if not crowd:
            continue
        sent = crowd[0].respond.respond_all(crowd, 200, _JSON_HEADERS, _page_body(page, gaps=not single))
        for poll, whole in zip(crowd, sent, strict=True):
            poll.counts.page(n, gaps)
            if not poll.done.done():
                poll.done.set_result(_SENT if whole else page)


class _Sent(Response):
    """A response already written whole (``hubbub.respond``): nothing more to send."""

    def __init__(self) -> None:
        pass

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        return


_SENT = _Sent()
_JSON_HEADERS = b"content-type: " + JSON.encode() + b"\r\n"
#: The last page body encoded: a group's members all answer the same page.
_last_body: tuple[Page | None, bool, bytes] = (None, False, b"")


def _page_body(page: Page, *, gaps: bool) -> bytes:
    global _last_body
    last, last_gaps, body = _last_body
    if last is page and last_gaps == gaps:
        return body
    # The cached per-message JSON is spliced in as is: no re-serialization.
    parts = [
        b'{"messages":[', b",".join(m.to_json() for m in page.messages),
        b'],"cursor":', _encode(page.cursor),
    ]
    if gaps:
        parts += [b',"gaps":', _encode([g.to_dict() for g in page.gaps])]
    parts.append(b"}")
    body = b"".join(parts)
    _last_body = (page, gaps, body)
    return body


def _page_response(got: Page | Response, *, gaps: bool) -> Response:
    if isinstance(got, Response):
        return got
    return Response(_page_body(got, gaps=gaps), media_type=JSON)


async def topic_messages(request: Request) -> Response:
    topic = validate_topic(request.path_params["topic"])
    before = query_one(request, "before")
    if before is not None:
        return await _history(request, topic, before)
    return _page_response(await _poll(request, [topic], single=True), gaps=False)


async def _history(request: Request, topic: str, before: str) -> Response:
    """``?before=end|CURSOR&limit=``: a page read backwards (:mod:`hubbub.core.history`)."""
    hub = hub_of(request)
    authorize(request, Action.SUBSCRIBE, [topic])
    for name in ("after", "wait"):
        if query_one(request, name) is not None:
            raise InvalidRequest(f"before reads back from a place; {name} does not apply",
                                 field=name)
    page = await read_before(hub.engine, topic, before,
                             _limit(request, hub.config.server.max_limit))
    hub.metrics.poll.page(len(page.messages), [])
    return Response(b"".join((
        b'{"messages":[', b",".join(m.to_json() for m in page.messages),
        b'],"prev":', _encode(page.prev), b',"cursor":', _encode(page.cursor), b"}",
    )), media_type=JSON)


async def messages(request: Request) -> Response:
    got = await _poll(request, query_topics(request), single=False)
    return _page_response(got, gaps=True)


async def list_topics(request: Request) -> Response:
    hub = hub_of(request)
    principal = principal_of(request)
    limit = _limit(request, hub.config.server.max_limit, TOPICS_PAGE)
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
