"""What crosses the core's API: :mod:`hubbub.core.values`, no loop."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.core.values import encode_value, scoped_key
from hubbub.protocol.errors import InvalidRequest
from hubbub.protocol.message import JSON

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@given(json_values)
def test_any_json_value_is_encoded_as_json_that_reads_back(value: Any) -> None:
    """A value that is not bytes becomes JSON text that decodes to the same value."""
    data, content_type = encode_value(value)
    assert content_type == JSON
    assert json.loads(data) == value


@pytest.mark.parametrize("value", [b"\x00\xff", bytearray(b"ab"), memoryview(b"cd")])
def test_bytes_stay_bytes(value: Any) -> None:
    """Bytes-like values are the payload as they are, typed as octet-stream."""
    assert encode_value(value) == (bytes(value), "application/octet-stream")


@pytest.mark.parametrize("value", [object(), 1 + 2j, {"a": object()}])
def test_a_value_json_cannot_carry_is_refused_naming_the_field(value: Any) -> None:
    """An unencodable value is an InvalidRequest naming the field it came in."""
    with pytest.raises(InvalidRequest) as refused:
        encode_value(value, field="result")
    assert refused.value.field == "result"


def test_an_unowned_key_is_stored_as_given() -> None:
    """Without an owner the key is the key."""
    assert scoped_key("k1", None) == "k1"


@given(st.text(min_size=1).filter(lambda k: " " not in k), st.text(), st.text())
def test_owned_keys_differ_by_owner_and_never_equal_an_unowned_one(
        key: str, owner: str, other: str) -> None:
    """A scoped key is the same for one owner, differs between owners, and is never
    a key a client could give (it holds a space)."""
    mine = scoped_key(key, owner)
    assert mine == scoped_key(key, owner)
    assert mine != key and " " in mine and mine.startswith(key + " ")
    assert (mine == scoped_key(key, other)) == (owner == other)


def test_an_owner_that_is_not_valid_unicode_still_scopes() -> None:
    """Lone surrogates (from a decoded header) do not make scoping fail."""
    assert scoped_key("k", "\udcff") != scoped_key("k", "\udcfe")
