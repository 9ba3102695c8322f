"""Short and long polls over HTTP: a page now, or the first message within a wait.

``GET /v1/topics/{topic}/messages`` and ``GET /v1/messages``
(:mod:`hubbub.transports.http`) read through :func:`poll_page`. On
``hubbub serve`` a long poll waits together with the others at its position
(:mod:`hubbub.core.polls`) and is answered by one read and one encoded page,
written whole (:mod:`hubbub.server.whole`); mounted elsewhere it waits on
its own while the socket is watched.
"""

from __future__ import annotations

import asyncio
from typing import cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ..core import Hub, Page
from ..core.metrics import DoorCounts
from ..core.polls import Answer
from ..protocol.errors import HubbubError
from ..protocol.message import JSON
from .auth import Action, authorize
from .extensions import Responder, responder
from .httpkit import JSON_HEADERS, SENT, hub_of, query_limit, query_one, query_wait, while_connected

_encode = msgspec.json.Encoder().encode


async def poll_page(request: Request, patterns: list[str], *, single: bool) -> Page | Response:
    """Run ``hub.poll``; a long poll ends early (and quietly) if the client leaves.

    Returns the page to send, or (a long poll on ``hubbub serve``) the
    response already written.
    """
    hub = hub_of(request)
    authorize(request, Action.SUBSCRIBE, patterns)
    server = hub.config.server
    after = query_one(request, "after")
    limit = query_limit(request, server.max_limit)
    wait = query_wait(request, server.max_wait)
    if wait == 0:
        page = await hub.poll(patterns, after, limit=limit, raise_gap=single)
        hub.metrics.poll.page(len(page.messages), page.gaps)
        return page
    respond = responder(request.scope)
    if respond is not None:
        return await _wait_together(hub, pages_of(request), request.scope, respond, patterns,
                                    after, limit, wait, single)
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
    hub: Hub, pages: Pages, scope: Scope, respond: Responder, patterns: list[str], after: str | None,
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
    poll = _WaitingPoll(pages, respond, scope, loop.create_future(), counts, single)
    done = poll.done

    def time_up() -> None:
        member.leave()
        poll(Page([], cursor))

    def gone() -> None:
        member.leave()
        timer.cancel()
        if not done.done():
            done.set_result(Page([], cursor))  # nobody reads this answer

    member = hub.polls.wait(got, limit, poll, pages)
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

    __slots__ = ("pages", "respond", "scope", "done", "counts", "single", "answered")

    def __init__(self, pages: Pages, respond: Responder, scope: Scope,
                 done: asyncio.Future[Page | Response | None], counts: DoorCounts,
                 single: bool) -> None:
        self.pages = pages
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
                    self.done.set_result(None)  # read again (:mod:`hubbub.core.polls`,
                    # invariant "what a group cannot say, read again")
                else:
                    self.done.set_exception(page)  # the live feed failed (the same invariant)
        else:
            self.pages(page, [self])


class Pages:
    """The long polls of one application: the crowd that answers a group's
    polls at once (:data:`Crowd <hubbub.core.polls.Crowd>`), and the last
    page body it encoded, since every member of a group answers the same page.
    The application owns one (``app.state.pages``: :func:`pages_of`)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        #: The last page body encoded: ``(page, with gaps, body)``.
        self._last: tuple[Page | None, bool, bytes] = (None, False, b"")

    def __call__(self, page: Page, answers: list[Answer]) -> None:
        """Answer long polls that got ``page`` (a group's: :mod:`hubbub.core.polls`,
        trade-off "a crowd answers at once"): one
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
            sent = crowd[0].respond.respond_all(crowd, 200, JSON_HEADERS,
                                                self.body(page, gaps=not single))
            for poll, whole in zip(crowd, sent, strict=True):
                poll.counts.page(n, gaps)
                if not poll.done.done():
                    poll.done.set_result(SENT if whole else page)

    def body(self, page: Page, *, gaps: bool) -> bytes:
        """The JSON body of ``page``, with its ``"gaps"`` when ``gaps``."""
        last, last_gaps, body = self._last
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
        self._last = (page, gaps, body)
        return body

    def response(self, got: Page | Response, *, gaps: bool) -> Response:
        """What to send for :func:`poll_page`'s answer ``got``."""
        if isinstance(got, Response):
            return got
        return Response(self.body(got, gaps=gaps), media_type=JSON)


def pages_of(request: Request) -> Pages:
    """The long polls of the request's application."""
    pages: Pages = request.app.state.pages
    return pages


__all__ = ["Pages", "pages_of", "poll_page"]
