"""OpenTelemetry traces of the hub's work, when an application asks for them.

What is traced (span names, all with ``messaging.system = "hubbub"``):

==========================  ==================================================
``hubbub publish``          a publish or a batch, from validation to commit
                            (PRODUCER): ``messaging.destination.name`` (the
                            topic, or the first of a batch),
                            ``messaging.batch.message_count``, and once stored
                            ``hubbub.offset`` (of the first message)
``hubbub store.append``     its child: the store's commit, ``hubbub.engine``
``hubbub fanout``           its child: the committed messages handed to this
                            node's live subscriptions, ``hubbub.subscribers``
                            (how many follow the topic here); the writes to
                            their sockets come at the end of the loop pass
``hubbub request``          a request-reply caller's publish of its request
                            (CLIENT), ``messaging.destination.name``
``hubbub request.wait``     the wait for its reply; an error status when none
                            came (timeout)
``hubbub reply``            a responder's reply (``hubbub.request_id``)
==========================  ==================================================

Spans are children of whatever span is current, so a door's request (traced
by the application's ASGI instrumentation, say) holds the hub's spans.

No cost unless asked: without the ``otel`` extra (``opentelemetry-api``)
nothing is imported, and with it the hub traces only once a tracer provider
has been set (``opentelemetry.trace.set_tracer_provider``, or
``opentelemetry-instrument``) when it starts; otherwise :attr:`Hub.tracer
<hubbub.core.Hub.tracer>` stays ``None`` and every call site skips its span
after one attribute check.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar

from .. import __version__

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

SYSTEM = {"messaging.system": "hubbub"}

P = ParamSpec("P")
R = TypeVar("R")


def tracer() -> Tracer | None:
    """hubbub's tracer if OpenTelemetry is installed and a tracer provider is set."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return None  # nobody configured tracing: stay free
    return trace.get_tracer("hubbub", __version__)


class _HasHub(Protocol):
    @property
    def hub(self) -> Any: ...


S = TypeVar("S", bound=_HasHub)


def traced(name: str, kind: str = "INTERNAL", *,
           attributes: Callable[..., dict[str, Any]] | None = None,
           ) -> Callable[[Callable[Concatenate[S, P], Coroutine[Any, Any, R]]],
                         Callable[Concatenate[S, P], Coroutine[Any, Any, R]]]:
    """Make a method of an object with a ``hub`` a span ``name`` when its hub traces.

    ``attributes(*args, **kwargs)`` (the method's arguments after ``self``) gives
    the span's attributes besides :data:`SYSTEM`.
    """

    def decorate(method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]]
                 ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
        async def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
            spans: Tracer | None = self.hub.tracer
            if spans is None:
                return await method(self, *args, **kwargs)
            from opentelemetry.trace import SpanKind

            attrs = {**SYSTEM, **(attributes(*args, **kwargs) if attributes else {})}
            with spans.start_as_current_span(name, kind=SpanKind[kind], attributes=attrs):
                return await method(self, *args, **kwargs)

        functools.update_wrapper(run, method)  # its name and docstring
        return run

    return decorate


__all__ = ["SYSTEM", "traced", "tracer"]
