"""The scope extensions a server may offer the doors: :mod:`hubbub.transports.extensions`.

Pure look-ups: a plain ASGI scope (a mounted app) has neither extension, and
the doors then take the plain path; no hub, no loop.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from hubbub.transports.extensions import (
    FRAMES,
    RESPOND,
    frames_farewell,
    frames_gatherer,
    frames_sender,
    frames_writer,
    responder,
)


@pytest.mark.parametrize("scope", [{}, {"extensions": None}, {"extensions": {}},
                                   {"extensions": {"http.response.trailers": {}}}])
def test_a_plain_asgi_scope_offers_nothing(scope: dict[str, Any]) -> None:
    """Without the extensions every look-up is None, and gathering holds nothing back."""
    assert responder(scope) is None
    assert frames_sender(scope) is None and frames_writer(scope) is None
    with frames_gatherer(scope)() as held:
        assert held is None


def test_the_server_s_extensions_are_found_under_their_keys() -> None:
    """What a server puts under ``hubbub.respond`` and ``hubbub.frames`` is what the doors get."""
    respond, gathered = object(), []

    async def send(data: bytes) -> None:
        return None

    def write(data: bytes) -> bool:
        return True

    @contextlib.contextmanager
    def gather() -> Iterator[None]:
        gathered.append("in")
        yield
        gathered.append("out")

    def farewell(last: Any) -> None:
        return None

    frames = SimpleNamespace(send_frames=send, write_frames=write, gather_writes=gather,
                             farewell=farewell)
    scope = {"extensions": {RESPOND: respond, FRAMES: frames}}
    assert responder(scope) is respond
    assert frames_sender(scope) is send and frames_writer(scope) is write
    assert frames_farewell(scope) is farewell
    with frames_gatherer(scope)():
        assert gathered == ["in"]
    assert gathered == ["in", "out"]


def test_a_frames_extension_without_some_callables() -> None:
    """A ``hubbub.frames`` object that lacks a method gives None for it (a plain
    block for ``gather_writes``)."""
    scope = {"extensions": {FRAMES: SimpleNamespace(send_frames=print)}}
    assert frames_sender(scope) is print
    assert frames_writer(scope) is None and frames_farewell(scope) is None
    assert frames_gatherer(scope) is contextlib.nullcontext
    assert responder(scope) is None
