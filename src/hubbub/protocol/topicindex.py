"""The names of every topic, indexed by token (pure).

The hub keeps one :class:`TopicIndex` of the topics it has seen stored (the
store's list when it starts, then every message its engine reports), so that

* a pattern resolves by walking a trie of topic tokens, touching only the
  branches it can match, instead of testing every topic of the store
  (``in.*`` over 150,000 topics visits ``in`` and its children);
* a publish that would create a topic is judged against ``[limits] topics``
  and ``topics_per_namespace`` by two counts, with no store round trip;
* ``GET /v1/topics`` pages through the names in order (:meth:`TopicIndex.sorted_from`).

Theory of operation
-------------------
Each node of the trie is one token; a node whose path is a topic's name is
marked. ``*`` follows every child of a node, ``>`` every marked node below it
(at least one token). The index only grows while the hub runs: a topic whose
history is trimmed away still exists (it keeps its epoch and offsets).

Trade-offs: the sorted list of names that paging needs is built when first
asked for after a change and kept until the next one; a hub creating topics
all the time while someone pages sorts once per page.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator


class _Node:
    __slots__ = ("children", "topic")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        #: Whether the path to this node is a topic's name.
        self.topic = False


class TopicIndex:
    """Topic names: membership, counts per namespace, pattern matches, pages."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._root = _Node()
        self._names: set[str] = set()
        self._per_namespace: Counter[str] = Counter()
        self._sorted: list[str] | None = None
        for name in names:
            self.add(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __len__(self) -> int:
        return len(self._names)

    def in_namespace(self, namespace: str) -> int:
        """How many topics the namespace (first token) has."""
        return self._per_namespace[namespace]

    def add(self, name: str) -> bool:
        """Index a (valid) topic name; whether it was new."""
        if name in self._names:
            return False
        node = self._root
        for token in name.split("."):
            child = node.children.get(token)
            if child is None:
                child = node.children[token] = _Node()
            node = child
        node.topic = True
        self._names.add(name)
        self._per_namespace[name.partition(".")[0]] += 1
        self._sorted = None
        return True

    def discard(self, name: str) -> bool:
        """Forget a topic (it was deleted); whether it was known."""
        if name not in self._names:
            return False
        path = [self._root]
        for token in name.split("."):
            path.append(path[-1].children[token])
        path[-1].topic = False
        for parent, token in zip(reversed(path[:-1]), reversed(name.split(".")), strict=True):
            child = parent.children[token]
            if child.topic or child.children:
                break
            del parent.children[token]
        self._names.discard(name)
        self._per_namespace[name.partition(".")[0]] -= 1
        self._sorted = None
        return True

    def match(self, pattern: str) -> list[str]:
        """The topics a (valid) name or pattern matches, in no set order."""
        out: list[str] = []
        self._walk(self._root, pattern.split("."), 0, [], out)
        return out

    def _walk(self, node: _Node, tokens: list[str], i: int, path: list[str],
              out: list[str]) -> None:
        if i == len(tokens):
            if node.topic:
                out.append(".".join(path))
            return
        token = tokens[i]
        if token == ">":
            for name, child in node.children.items():
                out.extend(_below(child, [*path, name]))
            return
        if token == "*":
            for name, child in node.children.items():
                self._walk(child, tokens, i + 1, [*path, name], out)
            return
        found = node.children.get(token)
        if found is not None:
            self._walk(found, tokens, i + 1, [*path, token], out)

    def sorted_from(self, after: str | None) -> Iterator[str]:
        """Every name after ``after`` (exclusive), in order: take what a page needs.
        (Adding a topic while iterating is safe: the iterator goes on over the
        names as they were.)"""
        if self._sorted is None:
            self._sorted = sorted(self._names)
        names = self._sorted
        start = 0 if after is None else bisect.bisect_right(names, after)
        return (names[i] for i in range(start, len(names)))


def _below(node: _Node, path: list[str]) -> Iterator[str]:
    """Every topic at ``node`` or under it (``path`` is ``node``'s)."""
    stack = [(node, path)]
    while stack:
        n, p = stack.pop()
        if n.topic:
            yield ".".join(p)
        for name, child in n.children.items():
            stack.append((child, [*p, name]))


__all__ = ["TopicIndex"]
