"""What a server may offer the doors beyond plain ASGI: three scope extensions.

``hubbub serve`` runs a server (:mod:`hubbub.server`) that offers both;
mounted in someone else's ASGI server the doors find neither and send
through plain ASGI events, the documented slower path. Both paths carry the
same bytes. This module is the contract between the two layers: the server
implements it, the doors use it, and neither imports the other's code.

``scope["extensions"]["hubbub.frames"]`` (WebSocket scopes) is a
:class:`Frames`, one object rather than a dict of callables (a scope is kept
for its connection's life, and an idle connection should cost little), with:

* ``send_frames``: ``await send_frames(data)`` writes ``data``, any number
  of whole, final, unmasked server data frames (RFC 6455 §5.1: a server's
  frames are not masked, so one message's frame is the same bytes for
  every subscriber), in one write; it waits while the socket's buffer is
  full and raises ``OSError`` once the connection is closing or gone,
  writing nothing;
* ``write_frames``: ``write_frames(data)`` the same at once, or ``False``
  (nothing written) where ``send_frames`` would wait;
* ``gather_writes``: ``with gather_writes():`` holds back every
  ``write_frames`` made inside the block, per connection in order, and
  makes them all at its end (a loop pass's flush writes each connection
  once);
* ``farewell``: ``farewell(last)`` registers what the door says to a
  client the server cuts off as a slow consumer (``None`` unregisters).

``scope["extensions"]["hubbub.respond"]`` (HTTP scopes) is a
:class:`Responder`: a whole response (status line, headers, body) in one
write, to one request or to a crowd of them, and a callback when a waiting
request's client leaves, so a waiting request needs no task reading
``receive()``.

``scope["extensions"]["hubbub.farewell"]`` (HTTP scopes, HTTP/1.1 and
HTTP/2) is ``farewell(last)``: the same registration for a streaming
response (SSE).

Slow consumers
--------------
A client whose socket takes none of its queued bytes for the server's
``write_deadline`` is a slow consumer. The server knows sockets, not
cursors, so it asks the door what to say: it calls the registered ``last()``
once, at once (never waiting for the client to read), queues the answer
after everything already queued for the client, whatever the buffer holds,
ends the connection (or the stream) and stops counting it as open. For a
WebSocket ``last()`` returns ``(frames, code, reason)``: whole data frames
(as for ``send``), then the server's close frame of ``code`` and
``reason``; the app then hears ``websocket.disconnect`` with ``code``. For
an HTTP response it returns the response's last body bytes; the app then
hears ``http.disconnect``. The door learns that the client was cut off for
being slow from the call itself, and nothing it sends afterwards is
written. The bytes go out only as far as the client still reads: the
server closes the socket (the kernel sends what it can) and aborts it
after a short grace. Without a registered ``last()`` the connection is
cut off with nothing more said.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

#: The WebSocket extension's key in ``scope["extensions"]``.
FRAMES = "hubbub.frames"
#: The HTTP extension's key in ``scope["extensions"]``.
RESPOND = "hubbub.respond"
#: The key of the HTTP streaming responses' farewell in ``scope["extensions"]``.
FAREWELL = "hubbub.farewell"

#: ``await send(data)``: write whole pre-built server frames in one go.
SendFrames = Callable[[bytes], Awaitable[None]]
#: ``write(data)``: the same, now, if it needs no wait; ``False`` (nothing
#: written) while the socket's buffer is full.
WriteFrames = Callable[[bytes], bool]
#: ``with gather():`` the writes of ``WriteFrames`` inside the block made at its end.
GatherWrites = Callable[[], AbstractContextManager[None]]
#: ``last()`` of a WebSocket door: its last data frames, close code and reason
#: for a slow consumer.
LastFrames = Callable[[], tuple[bytes, int, str]]
#: ``last()`` of an HTTP streaming response: its last body bytes for a slow consumer.
LastBody = Callable[[], bytes]
#: ``farewell(last)``: register ``last`` (``None``: nothing to say).
FramesFarewell = Callable[[LastFrames | None], None]
BodyFarewell = Callable[[LastBody | None], None]


class Frames(Protocol):
    """The ``hubbub.frames`` extension of one WebSocket (the module docstring)."""

    async def send_frames(self, data: bytes) -> None: ...

    def write_frames(self, data: bytes) -> bool: ...

    @property
    def gather_writes(self) -> GatherWrites: ...

    def farewell(self, last: LastFrames | None) -> None: ...


class Responder(Protocol):
    """The ``hubbub.respond`` extension of one connection."""

    def respond(self, scope: object, status: int, headers: bytes, body: bytes) -> bool:
        """Write the whole response to the request of ``scope`` now; ``False``
        (nothing written) if it cannot go this way: the response started,
        the client is gone, the request is ``HEAD`` or waits behind another,
        or the socket's buffer is full. Then send it through ASGI, which
        waits. After ``True`` the application sends nothing more.

        ``headers`` are encoded header lines, each ending with CRLF, without
        ``content-length`` and the server's own headers (both added here).
        """
        ...

    def watch(self, scope: object, gone: Callable[[], None] | None) -> bool:
        """Call ``gone()`` (once) if the client of ``scope``'s request leaves
        before its response; ``None`` stops watching. ``False``, watching
        nothing, if the client is gone already."""
        ...

    def respond_all(self, requests: Sequence[Whole], status: int, headers: bytes,
                    body: bytes) -> list[bool]:
        """:meth:`respond` for many requests (of any connections of this
        server) with one response: whether each got it. Every write is made
        before any request's follow-up, so the last client of a crowd waits
        for the writes, not for the bookkeeping of those before it."""
        ...


class Whole(Protocol):
    """A request to answer through :meth:`Responder.respond_all`: its
    connection's extension and its scope."""

    @property
    def respond(self) -> Responder: ...

    @property
    def scope(self) -> object: ...


def _extension(scope: dict[str, Any] | Any, key: str) -> Any:
    ext = scope.get("extensions")
    return None if ext is None else ext.get(key)


def responder(scope: dict[str, Any] | Any) -> Responder | None:
    """The ``hubbub.respond`` extension of an HTTP scope, or ``None`` without it."""
    responder: Responder | None = _extension(scope, RESPOND)
    return responder


def _frames(scope: dict[str, Any] | Any, name: str) -> Any:
    """``name`` of the ``hubbub.frames`` extension of a WebSocket scope, or ``None``."""
    ext = _extension(scope, FRAMES)
    return None if ext is None else getattr(ext, name, None)


def frames_sender(scope: dict[str, Any] | Any) -> SendFrames | None:
    """The ``hubbub.frames`` sender of a WebSocket scope, or ``None`` without it."""
    send: SendFrames | None = _frames(scope, "send_frames")
    return send


def frames_writer(scope: dict[str, Any] | Any) -> WriteFrames | None:
    """The ``hubbub.frames`` writer (no waiting) of a WebSocket scope, or ``None``."""
    write: WriteFrames | None = _frames(scope, "write_frames")
    return write


def frames_gatherer(scope: dict[str, Any] | Any) -> GatherWrites:
    """The ``hubbub.frames`` gatherer of a WebSocket scope; without one, a
    block that holds nothing back."""
    gather: GatherWrites | None = _frames(scope, "gather_writes")
    return gather if gather is not None else contextlib.nullcontext


def frames_farewell(scope: dict[str, Any] | Any) -> FramesFarewell | None:
    """The ``hubbub.frames`` farewell of a WebSocket scope, or ``None``."""
    farewell: FramesFarewell | None = _frames(scope, "farewell")
    return farewell


def body_farewell(scope: dict[str, Any] | Any) -> BodyFarewell | None:
    """The ``hubbub.farewell`` of an HTTP scope, or ``None`` without it."""
    farewell: BodyFarewell | None = _extension(scope, FAREWELL)
    return farewell


__all__ = ["FAREWELL", "FRAMES", "RESPOND", "BodyFarewell", "Frames", "FramesFarewell",
           "GatherWrites", "LastBody", "LastFrames", "Responder", "SendFrames", "Whole", "WriteFrames",
           "body_farewell", "frames_farewell", "frames_gatherer", "frames_sender",
           "frames_writer", "responder"]
