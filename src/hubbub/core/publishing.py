"""Publishing to topic logs: validate each message, then store a batch atomically.

The part of :class:`~hubbub.core.hub.Hub` that writes: the topic name, the
payload's size and JSON, the idempotency key and the topic limits are checked
before anything is stored, and a publish returns once the store committed it.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..config import Config
from ..engines.base import AppendRequest, AppendResult, Engine
from ..protocol.errors import (
    Forbidden,
    InvalidRequest,
    LimitExceeded,
    PayloadTooLarge,
    Unavailable,
)
from ..protocol.message import JSON, compact_json
from ..protocol.topicindex import TopicIndex
from ..protocol.topics import namespace, validate_topic
from . import tracing
from .connections import ADMIN_NAMESPACE
from .fanout import FanOut
from .metrics import Metrics
from .values import PublishItem, scoped_key

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")


class Publishing:
    """The hub's publishing methods (mixed into :class:`~hubbub.core.hub.Hub`)."""

    engine: Engine
    config: Config
    metrics: Metrics
    fanout: FanOut
    topics: TopicIndex
    tracer: Tracer | None
    draining: bool
    now: Callable[[], int]

    def _check_open(self) -> None:
        if self.draining:
            raise Unavailable("hub is shutting down")

    # -- publishing ---------------------------------------------------------

    def _request(
        self, topic: str, data: bytes, content_type: str, key: str | None, prefix: str = "",
        owner: str | None = None,
    ) -> AppendRequest:
        """Validate one message; error fields are ``prefix`` + topic, data or key."""
        validate_topic(topic, field=prefix + "topic")
        if topic.startswith(ADMIN_NAMESPACE):
            # Orders to every node travel there (core.connections): nobody forges them.
            raise Forbidden("the _admin namespace is written by the hub only",
                            field=prefix + "topic")
        ns = self.config.for_topic(topic)
        if len(data) > ns.max_message_size:
            raise PayloadTooLarge(
                f"message is larger than {ns.max_message_size} bytes", field=prefix + "data"
            )
        if content_type == JSON:
            data = compact_json(data, field=prefix + "data",
                                max_depth=self.config.limits.json_depth)
        if key is not None and _KEY_RE.fullmatch(key) is None:
            raise InvalidRequest(
                "idempotency key must be 1-200 printable ASCII characters", field=prefix + "key"
            )
        if key is not None:
            key = scoped_key(key, owner)
        # ns.retention.max_messages, without making a Retention per message
        return AppendRequest(topic, data, content_type, key, ns.history_size or None)

    async def publish(
        self, topic: str, data: bytes, content_type: str = JSON, key: str | None = None, *,
        owner: str | None = None, limit_topics: bool = False,
    ) -> AppendResult:
        """Store one message and fan it out; returns after the store committed it.

        Args:
            key: an idempotency key: a retry with the same key (and ``owner``)
                stores nothing and returns the first receipt.
            owner: the publisher's subject; keys are scoped to it.
            limit_topics: a client asked for it: refuse to create a topic past
                ``[limits] topics`` and ``topics_per_namespace``.

        Raises:
            InvalidTopic, InvalidRequest, PayloadTooLarge: bad input; nothing stored.
            Unavailable: the store failed or the hub is draining; nothing stored.
        """
        self._check_open()
        req = self._request(topic, data, content_type, key, owner=owner)
        if limit_topics:
            self._check_new_topics([req])
        (result,) = await self._append([req])
        return result

    async def publish_batch(self, items: Sequence[PublishItem], *,
                            limit_topics: bool = False) -> list[AppendResult]:
        """Store several messages atomically: all are validated first, then all stored.
        ``limit_topics`` as for :meth:`publish`.

        Raises:
            InvalidRequest: an item is bad (``field`` names it); nothing stored.
        """
        self._check_open()
        if not items:
            raise InvalidRequest("batch is empty")
        reqs = [self._request(item.topic, item.data, item.content_type, item.key, f"[{i}].",
                              item.owner)
                for i, item in enumerate(items)]
        if limit_topics:
            self._check_new_topics(reqs)
        return await self._append(reqs)

    def _check_new_topics(self, reqs: Sequence[AppendRequest]) -> None:
        """Refuse requests that would create topics past ``[limits]``.

        Counted from the index, so concurrent first publishes may pass a limit by
        as many topics as they create; nothing is stored when refused.

        Raises:
            LimitExceeded: ``field`` is the topic, ``limit`` the setting.
        """
        if len(reqs) == 1 and reqs[0].topic in self.topics:
            return  # one message to a known topic: a publish's case, made cheap
        limits = self.config.limits
        new = [t for t in dict.fromkeys(r.topic for r in reqs) if t not in self.topics]
        if not new:
            return
        if limits.topics and len(self.topics) + len(new) > limits.topics:
            raise LimitExceeded(f"the hub has {limits.topics} topics, its limit; "
                                f"publish to an existing topic", field="topic", limit="topics")
        if limits.topics_per_namespace:
            for ns, n in Counter(namespace(t) for t in new).items():
                if self.topics.in_namespace(ns) + n > limits.topics_per_namespace:
                    raise LimitExceeded(
                        f"namespace {ns} has {limits.topics_per_namespace} topics, its limit",
                        field="topic", limit="topics_per_namespace")

    async def _append(self, reqs: list[AppendRequest]) -> list[AppendResult]:
        """Store validated messages; count them and the commit's latency."""
        if self.tracer is not None:
            return await self._append_traced(reqs, self.tracer)
        return await self._commit(reqs)

    async def _commit(self, reqs: list[AppendRequest]) -> list[AppendResult]:
        """The engine's append, its failures and its latency counted."""
        started = time.perf_counter()
        try:
            results = await self.engine.append(reqs, self.now())
        except Unavailable:
            self.metrics.store_errors["append"] += 1
            raise
        self.metrics.stored(results, time.perf_counter() - started)
        return results

    async def _append_traced(self, reqs: list[AppendRequest], spans: Tracer
                             ) -> list[AppendResult]:
        """:meth:`_append` inside the spans of :mod:`hubbub.core.tracing`."""
        from opentelemetry.trace import SpanKind

        topic = reqs[0].topic
        with spans.start_as_current_span("hubbub publish", kind=SpanKind.PRODUCER, attributes={
                **tracing.SYSTEM, "messaging.destination.name": topic,
                "messaging.batch.message_count": len(reqs)}) as span:
            with spans.start_as_current_span("hubbub store.append", attributes={
                    **tracing.SYSTEM, "hubbub.engine": type(self.engine).__name__}):
                results = await self._commit(reqs)
            span.set_attribute("hubbub.offset", results[0].message.offset)
            with spans.start_as_current_span("hubbub fanout", attributes={
                    **tracing.SYSTEM, "hubbub.subscribers": self.fanout.count(topic)}):
                pass  # handed over at commit; the writes come at the loop pass's end
        return results


__all__ = ["Publishing"]
