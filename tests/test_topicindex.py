"""The topic index (pure): membership, counts, pattern matches, ordered pages."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from hubbub.protocol.topicindex import TopicIndex
from hubbub.protocol.topics import matches

tokens = st.sampled_from(["a", "b", "c", "in", "x-1"])
names = st.lists(tokens, min_size=1, max_size=4).map(".".join)
patterns = st.lists(st.one_of(tokens, st.just("*")), min_size=0, max_size=3).flatmap(
    lambda head: st.one_of(st.just(head + ["*"]), st.just(head + [">"]),
                           tokens.map(lambda t: [*head, t]))).map(".".join)


@given(st.sets(names, max_size=30), patterns)
def test_match_is_every_topic_the_pattern_matches(topics: set[str], pattern: str) -> None:
    """The trie finds exactly what testing every name finds."""
    index = TopicIndex(topics)
    assert sorted(index.match(pattern)) == sorted(t for t in topics if matches(pattern, t))


@given(st.sets(names, max_size=30), st.sets(names, max_size=10))
def test_discard_undoes_add(topics: set[str], gone: set[str]) -> None:
    """Forgetting topics leaves the index as if they were never added."""
    index = TopicIndex(topics | gone)
    for name in gone - topics:
        assert index.discard(name)
    assert sorted(index.match(">")) == sorted(topics)
    assert len(index) == len(topics)


def test_counts_and_pages() -> None:
    index = TopicIndex(["b.1", "a.2", "a.1", "c"])
    assert not index.add("a.1") and index.add("a.3")
    assert (len(index), index.in_namespace("a"), index.in_namespace("c")) == (5, 3, 1)
    assert "a.2" in index and "a" not in index
    assert list(index.sorted_from(None)) == ["a.1", "a.2", "a.3", "b.1", "c"]
    assert list(index.sorted_from("a.3")) == ["b.1", "c"]
    assert list(index.sorted_from("a.25")) == ["a.3", "b.1", "c"]
    assert sorted(index.match("a.>")) == ["a.1", "a.2", "a.3"]
    assert index.match("a") == [] and index.match("c") == ["c"]
    assert index.match(">") and index.match("*") == ["c"]
