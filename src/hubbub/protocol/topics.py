"""Topic names and patterns (pure: no asyncio, no I/O).

A topic name is one or more tokens joined by ``.``; a token is one or more of
``A-Z a-z 0-9 _ - : @``. A pattern is a topic name in which a token may be
``*`` (exactly one token) and the last token may be ``>`` (one or more
tokens), as in NATS subjects::

    chat.room1        a topic, and a pattern matching only itself
    chat.*            chat.room1, chat.room2; not chat or chat.a.b
    chat.>            chat.room1, chat.a.b; not chat

The first token is the topic's *namespace*; per-namespace settings (history,
limits, who may publish) hang off it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import InvalidTopic

MAX_TOPIC_LENGTH = 255

_TOKEN = r"[A-Za-z0-9_\-:@]+"
_TOPIC_RE = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*")
_PATTERN_TOKEN_RE = re.compile(rf"{_TOKEN}|\*")


def validate_topic(name: str, *, field: str = "topic") -> str:
    """Return ``name`` if it is a valid concrete topic name.

    Raises:
        InvalidTopic: the name breaks the grammar; wildcards are not allowed here.
    """
    if not isinstance(name, str) or not name:
        raise InvalidTopic("topic name is empty", field=field)
    if len(name) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(f"topic name is longer than {MAX_TOPIC_LENGTH} characters", field=field)
    if _TOPIC_RE.fullmatch(name) is None:
        if "*" in name or ">" in name:
            raise InvalidTopic("wildcards are not allowed in a topic name", field=field)
        raise InvalidTopic(
            "topic name must be tokens of [A-Za-z0-9_-:@] joined by '.'", field=field
        )
    return name


def validate_pattern(pattern: str, *, field: str = "topic") -> str:
    """Return ``pattern`` if it is a valid topic name or wildcard pattern.

    Raises:
        InvalidTopic: the pattern breaks the grammar.
    """
    if not isinstance(pattern, str) or not pattern:
        raise InvalidTopic("topic pattern is empty", field=field)
    if len(pattern) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(
            f"topic pattern is longer than {MAX_TOPIC_LENGTH} characters", field=field
        )
    tokens = pattern.split(".")
    for i, token in enumerate(tokens):
        if token == ">" and i == len(tokens) - 1:
            continue
        if _PATTERN_TOKEN_RE.fullmatch(token) is None:
            if token == ">":
                raise InvalidTopic("'>' may only be the last token of a pattern", field=field)
            raise InvalidTopic(
                "pattern tokens must be [A-Za-z0-9_-:@]+, '*' or a final '>'", field=field
            )
    return pattern


def is_pattern(pattern: str) -> bool:
    """Whether ``pattern`` (already validated) contains a wildcard token."""
    return "*" in pattern or pattern == ">" or pattern.endswith(".>")


def namespace(topic: str) -> str:
    """The first token of a topic or pattern."""
    return topic.split(".", 1)[0]


def matches(pattern: str, topic: str) -> bool:
    """Whether the concrete ``topic`` matches ``pattern`` (both already validated)."""
    if not is_pattern(pattern):
        return pattern == topic
    ptoks = pattern.split(".")
    ttoks = topic.split(".")
    for i, p in enumerate(ptoks):
        if p == ">":
            return len(ttoks) > i
        if i >= len(ttoks):
            return False
        if p != "*" and p != ttoks[i]:
            return False
    return len(ptoks) == len(ttoks)


def covers(outer: str, inner: str) -> bool:
    """Whether every topic ``inner`` matches also matches ``outer`` (both validated).

    ``inner`` may itself be a pattern: ``chat.>`` covers ``chat.*`` and
    ``chat.a.>``; ``chat.*`` covers ``chat.a`` but not ``chat.>``; a concrete
    ``inner`` is covered exactly when ``outer`` matches it.
    """
    otoks = outer.split(".")
    itoks = inner.split(".")
    for i, o in enumerate(otoks):
        if o == ">":
            return len(itoks) > i  # '>' takes one token or more; so does any rest of inner
        if i >= len(itoks):
            return False
        t = itoks[i]
        if t == ">":
            return False  # inner goes on to any depth; outer does not
        if o != "*" and o != t:
            return False  # a literal covers only itself ('*' in inner is wider)
    return len(otoks) == len(itoks)


#: Concrete names a :class:`TopicFilter` looks through in turn rather than hashes.
FEW_NAMES = 4


class TopicFilter:
    """A set of patterns, answering "does this topic match any of them?".

    Exact names are looked up in a set; wildcard patterns are checked in turn.
    Answers are cached per topic, since the same topics recur.
    """

    __slots__ = ("patterns", "exact", "wild", "_cache")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: tuple[str, ...] = tuple(dict.fromkeys(patterns))
        exact = tuple(p for p in self.patterns if not is_pattern(p))
        #: The concrete names: a tuple while there are few (a frozenset of one
        #: name takes 216 bytes, a tuple 48, and every subscription has a
        #: filter), a frozenset past :data:`FEW_NAMES`.
        self.exact: tuple[str, ...] | frozenset[str] = (
            exact if len(exact) <= FEW_NAMES else frozenset(exact))
        self.wild = tuple(p for p in self.patterns if is_pattern(p))
        self._cache: dict[str, bool] = {}

    @property
    def single_topic(self) -> str | None:
        """The topic name if this filter is exactly one concrete topic."""
        if len(self.patterns) == 1 and not self.wild:
            return self.patterns[0]
        return None

    def __call__(self, topic: str) -> bool:
        hit = self._cache.get(topic)
        if hit is None:
            hit = topic in self.exact or any(matches(p, topic) for p in self.wild)
            if len(self._cache) < 4096:
                self._cache[topic] = hit
        return hit
