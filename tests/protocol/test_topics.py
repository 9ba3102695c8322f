"""Topic names and patterns: grammar and matching, without a loop or a network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.protocol.errors import InvalidTopic
from hubbub.protocol.topics import (
    FEW_NAMES,
    TopicFilter,
    covers,
    matches,
    namespace,
    validate_pattern,
    validate_topic,
)

TOKEN = st.from_regex(r"[A-Za-z0-9_\-:@]{1,8}", fullmatch=True)
TOPIC = st.lists(TOKEN, min_size=1, max_size=5).map(".".join)


@pytest.mark.parametrize("name", ["a", "chat.room1", "user:42.inbox", "a-b_c@d.e", "x" * 255])
def test_valid_topics(name: str) -> None:
    """Names of tokens joined by dots are accepted as they are."""
    assert validate_topic(name) == name


@pytest.mark.parametrize(
    "name",
    ["", ".", "a.", ".a", "a..b", "a b", "chat.*", "chat.>", "é", "a/b", "x" * 256, "a\n", "a\x00"],
)
def test_invalid_topics(name: str) -> None:
    """Anything else is refused with InvalidTopic naming the field."""
    with pytest.raises(InvalidTopic) as exc:
        validate_topic(name)
    assert exc.value.field == "topic"


@pytest.mark.parametrize("pattern", ["a", "a.*", "*", ">", "a.>", "*.b.>", "a.*.c"])
def test_valid_patterns(pattern: str) -> None:
    """Patterns use * for one token and a final > for the rest."""
    assert validate_pattern(pattern) == pattern


@pytest.mark.parametrize("pattern", ["", "a.>.b", ">.a", "a*", "a.**", "a.>>", "a..*", "a.#"])
def test_invalid_patterns(pattern: str) -> None:
    """Wildcards inside tokens, or > before the end, are refused."""
    with pytest.raises(InvalidTopic):
        validate_pattern(pattern)


@pytest.mark.parametrize(
    ("pattern", "topic", "hit"),
    [
        ("chat.*", "chat.a", True),
        ("chat.*", "chat", False),
        ("chat.*", "chat.a.b", False),
        ("chat.>", "chat.a.b", True),
        ("chat.>", "chat", False),
        (">", "x", True),
        ("*.b", "a.b", True),
        ("*.b", "a.c", False),
        ("a.b", "a.b", True),
        ("a.b", "a.bc", False),
    ],
)
def test_matches(pattern: str, topic: str, hit: bool) -> None:
    """Matching follows NATS subject rules."""
    assert matches(pattern, topic) is hit
    assert TopicFilter([pattern])(topic) is hit


@given(TOPIC)
def test_every_topic_matches_itself_and_the_catch_all(topic: str) -> None:
    """A topic is a pattern that matches itself; > matches every topic."""
    assert validate_topic(topic) == topic
    assert matches(topic, topic)
    assert matches(">", topic)
    assert matches(namespace(topic) + ".>", topic) is ("." in topic)


@given(st.text(max_size=40))
def test_arbitrary_text_validates_or_raises_invalid_topic(text: str) -> None:
    """Any string is either a valid pattern or an InvalidTopic, never another error."""
    try:
        validate_pattern(text)
    except InvalidTopic:
        return
    tokens = text.split(".")
    assert all(t for t in tokens)


def test_filter_single_topic() -> None:
    """A filter of one concrete name reports it; wildcard or several do not."""
    assert TopicFilter(["a.b"]).single_topic == "a.b"
    assert TopicFilter(["a.*"]).single_topic is None
    assert TopicFilter(["a", "b"]).single_topic is None


@pytest.mark.parametrize(
    ("outer", "inner", "covered"),
    [
        ("chat.>", "chat.*", True),
        ("chat.>", "chat.a.>", True),
        ("chat.>", "chat.a", True),
        ("chat.>", "chat", False),
        ("chat.>", "chat.>", True),
        ("chat.*", "chat.a", True),
        ("chat.*", "chat.*", True),
        ("chat.*", "chat.>", False),
        ("chat.*", "chat.a.b", False),
        ("chat.a", "chat.*", False),
        ("chat.a", "chat.a", True),
        ("*.a", "chat.a", True),
        ("*.a", "*.a", True),
        ("chat.*", "*.a", False),
        (">", ">", True),
        (">", "*.*.>", True),
        ("a.>", ">", False),
    ],
)
def test_covers(outer: str, inner: str, covered: bool) -> None:
    """A pattern covers another when every topic the inner one matches, it matches."""
    assert covers(outer, inner) is covered


PATTERN = st.lists(st.sampled_from(["a", "b", "*"]), min_size=1, max_size=4).flatmap(
    lambda toks: st.sampled_from([".".join(toks), ".".join([*toks, ">"])]))


@given(PATTERN, PATTERN, st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6))
def test_covers_agrees_with_matching(outer: str, inner: str, tokens: list[str]) -> None:
    """If outer covers inner, no topic matches inner without matching outer."""
    topic = ".".join(tokens)
    if covers(outer, inner) and matches(inner, topic):
        assert matches(outer, topic)


PATTERN = st.one_of(TOPIC, TOPIC.map(lambda t: t + ".>"), TOPIC.map(lambda t: "*." + t))


@given(st.lists(PATTERN, min_size=1, max_size=12), st.lists(TOPIC, min_size=1, max_size=10))
def test_a_filter_matches_what_any_of_its_patterns_matches(
        patterns: list[str], topics: list[str]) -> None:
    """However many names a filter holds (looked through in turn while few,
    hashed past that), it answers as its patterns do, asked twice (cached)."""
    filt = TopicFilter(patterns)
    for topic in [*topics, *patterns]:
        if any(c in topic for c in "*>"):
            continue
        want = any(matches(p, topic) for p in patterns)
        assert filt(topic) is want
        assert filt(topic) is want


def test_a_filter_of_many_names_hashes_them() -> None:
    few = [f"t{i}" for i in range(FEW_NAMES)]
    assert isinstance(TopicFilter(few).exact, tuple)
    assert isinstance(TopicFilter([*few, "more"]).exact, frozenset)
    assert TopicFilter([*few, "more"])("more") and not TopicFilter(few)("more")
