"""The tus header parsers (pure): exact rules, and no input that breaks them."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.protocol.errors import InvalidRequest
from hubbub.protocol.tus import (
    format_checksum,
    format_metadata,
    parse_checksum,
    parse_defer_length,
    parse_metadata,
    parse_uint,
)

keys = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=","),
               min_size=1, max_size=20)


@given(st.dictionaries(keys, st.binary(max_size=60), max_size=8))
def test_metadata_roundtrip(pairs: dict[str, bytes]) -> None:
    """Whatever format_metadata writes, parse_metadata reads back exactly."""
    assert parse_metadata(format_metadata(pairs)) == pairs


@given(st.text(max_size=200))
def test_metadata_parser_only_refuses_cleanly(text: str) -> None:
    """Any text parses or raises InvalidRequest naming Upload-Metadata."""
    try:
        parse_metadata(text)
    except InvalidRequest as exc:
        assert exc.field == "Upload-Metadata"


def test_metadata_rules() -> None:
    assert parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential") == {
        "filename": b"world_domination_plan.pdf", "is_confidential": b""}
    for bad in ("a YQ==,a YQ==", "a  YQ==", "a Y", "a YQ", "k\u00e9y YQ==", "a YQ==,,b"):
        with pytest.raises(InvalidRequest):
            parse_metadata(bad)


@given(st.sampled_from(["sha1", "md5", "sha256", "sha512"]), st.binary(max_size=100))
def test_checksum_roundtrip(algorithm: str, body: bytes) -> None:
    digest = hashlib.new(algorithm, body).digest()
    assert parse_checksum(format_checksum(algorithm, digest)) == (algorithm, digest)


@given(st.text(max_size=120))
def test_checksum_parser_only_refuses_cleanly(text: str) -> None:
    try:
        result = parse_checksum(text)
    except InvalidRequest as exc:
        assert exc.field == "Upload-Checksum"
    else:
        assert result is not None and len(result[1]) == hashlib.new(result[0]).digest_size


def test_checksum_rules() -> None:
    assert parse_checksum(None) is None
    for bad in ("crc32 AAAAAA==", "sha1", "sha1 !!!!", "sha1 YQ==", "SHA1 " + "A" * 28):
        with pytest.raises(InvalidRequest):
            parse_checksum(bad)


@given(st.text(max_size=30))
def test_uint_parser(text: str) -> None:
    """Upload-Offset and Upload-Length: 1-19 ASCII digits, nothing else."""
    try:
        value = parse_uint(text, header="Upload-Offset")
    except InvalidRequest as exc:
        assert exc.field == "Upload-Offset"
        assert not (text.strip().isascii() and text.strip().isdigit()
                    and len(text.strip()) <= 19)
    else:
        assert value == int(text.strip()) and value >= 0


def test_defer_length() -> None:
    assert parse_defer_length(None) is False and parse_defer_length("1") is True
    with pytest.raises(InvalidRequest):
        parse_defer_length("0")
