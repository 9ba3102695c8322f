"""Lease rules, without a loop or a network."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.protocol.errors import InvalidRequest
from hubbub.protocol.leases import (
    TRANSITIONS,
    Pending,
    State,
    dead_letter_payload,
    dead_letter_topic,
    new_lease_id,
    parse_lease_id,
    take,
    validate_group,
)
from hubbub.protocol.message import Message
from hubbub.protocol.topics import validate_topic


def test_due_and_state() -> None:
    """A lease is held until its deadline; after it the entry is due and waiting
    (invariant "due at the deadline")."""
    e = Pending(5, "t", 1, 1, "5.aaaaaaaaaaaa", deadline=1000)
    assert e.state(999) is State.LEASED and not e.due(999)
    assert e.state(1000) is State.WAITING and e.due(1000)


def test_take_leases_again_with_a_new_id_then_dies() -> None:
    """Taking a due entry leases it anew, until max_deliver attempts make it dead
    (invariant "due entries first")."""
    e = Pending(5, "t", 1, 1, "5.aaaaaaaaaaaa", deadline=0)
    assert take(e, now=10, lease_ms=100, max_deliver=3) is State.LEASED
    assert (e.attempts, e.deadline) == (2, 110)
    assert e.lease_id != "5.aaaaaaaaaaaa" and parse_lease_id(e.lease_id) == 5
    assert take(e, now=200, lease_ms=100, max_deliver=3) is State.LEASED
    assert take(e, now=400, lease_ms=100, max_deliver=3) is State.DEAD
    assert e.attempts == 3


def test_transition_table_covers_every_event_of_a_held_lease() -> None:
    """A leased entry answers ack, nack, extend and expiry; a waiting one only a take."""
    leased = {ev for (st_, ev) in TRANSITIONS if st_ is State.LEASED}
    assert leased == {"ack", "nack", "extend", "expire"}
    assert TRANSITIONS[(State.LEASED, "ack")] is State.DONE


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_lease_ids_round_trip(seq: int) -> None:
    """Every lease id names its seq."""
    assert parse_lease_id(new_lease_id(seq)) == seq


@pytest.mark.parametrize("seq", [2**63, 9_300_000_000_000_000_000, 10**19 - 1])
def test_a_seq_past_64_bits_is_not_a_lease_id(seq: int) -> None:
    """19 digits fit the lease id's pattern but not a store's integers: a
    malformed id (400), not an overflow in the store (500)."""
    with pytest.raises(InvalidRequest) as caught:
        parse_lease_id(f"{seq}.000000000000")
    assert caught.value.field == "ids"


@given(st.one_of(st.text(max_size=40), st.integers(), st.none(), st.lists(st.text())))
def test_anything_else_is_not_a_lease_id(value: object) -> None:
    """Malformed ids are InvalidRequest, never another error."""
    try:
        parse_lease_id(value)
    except InvalidRequest as exc:
        assert exc.field == "ids"


@pytest.mark.parametrize("name", ["", "a.b", "a b", "x" * 65, "*", ">"])
def test_bad_group_names(name: str) -> None:
    """Group names are one topic token, so the dead-letter topic is a valid name."""
    with pytest.raises(InvalidRequest):
        validate_group(name)


def test_dead_letter_payload_keeps_the_message_and_why() -> None:
    """The dead letter carries the original message, its attempts and the last error."""
    validate_topic(dead_letter_topic(validate_group("mailer")))
    msg = Message("jobs.a", "abcdefghij", 7, 70, 123, "mid", b'{"x":1}')
    body = json.loads(dead_letter_payload("mailer", msg, 5, "boom"))
    assert body == {
        "group": "mailer", "topic": "jobs.a", "offset": 7, "cursor": "abcdefghij.7.70",
        "id": "mid", "time": 123, "attempts": 5, "error": "boom", "data": {"x": 1},
    }
    raw = Message("jobs.a", "abcdefghij", 8, 71, 124, "mid2", b"\x00\x01", "image/png")
    body = json.loads(dead_letter_payload("mailer", raw, 5, None))
    assert body["content_type"] == "image/png" and body["data"] == "AAE="
