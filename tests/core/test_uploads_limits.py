"""What an upload may take (``hubbub.core.uploads_limits``), with no loop and no store."""

from __future__ import annotations

import pytest

from hubbub.config import LimitsConfig
from hubbub.core.uploads_limits import check_append, check_quota, limit_of
from hubbub.core.uploads_record import Upload
from hubbub.protocol.errors import Conflict, InvalidRequest, PayloadTooLarge


def upload(offset: int, length: int | None, owner: str | None = None) -> Upload:
    return Upload("a" * 32, offset, length, 0, None, None, None, None, 1, owner)


def test_an_append_must_start_at_the_offset() -> None:
    """Only the recorded offset is accepted; the problem says what it is."""
    up = upload(3, 10)
    assert check_append(up, 3, None, 7, 100) is up
    with pytest.raises(Conflict) as caught:
        check_append(up, 2, None, None, 100)
    assert caught.value.extra["offset"] == 3


def test_a_length_is_set_once_within_bounds() -> None:
    """A deferred length may be set, never changed, never under the offset or over max_size."""
    assert check_append(upload(3, None), 3, 5, None, 100).length is None
    with pytest.raises(InvalidRequest):
        check_append(upload(3, 10), 3, 11, None, 100)
    with pytest.raises(InvalidRequest):
        check_append(upload(3, None), 3, 2, None, 100)
    with pytest.raises(PayloadTooLarge):
        check_append(upload(0, None), 0, 101, None, 100)


def test_a_declared_body_must_fit() -> None:
    """The body may reach the length (recorded, or given now), else max_size."""
    with pytest.raises(PayloadTooLarge):
        check_append(upload(3, 10), 3, None, 8, 100)
    with pytest.raises(PayloadTooLarge):
        check_append(upload(3, None), 3, 6, 4, 100)
    check_append(upload(3, None), 3, None, 97, 100)
    assert [limit_of(upload(0, 10), 5, 100), limit_of(upload(0, None), 5, 100),
            limit_of(upload(0, None), None, 100)] == [10, 5, 100]


def test_quota_counts_lengths_or_offsets_in_all_and_per_owner() -> None:
    """Each upload counts by its length, or its offset while deferred; the
    owner's limit counts only the owner's uploads, and names itself."""
    stored = [upload(1, 10, "ann"), upload(4, None, "ann"), upload(0, 20, "bob")]
    limits = LimitsConfig(upload_bytes=100, upload_bytes_per_principal=20)
    check_quota(stored, 6, "ann", limits)
    with pytest.raises(PayloadTooLarge) as caught:
        check_quota(stored, 7, "ann", limits)
    assert caught.value.extra["limit"] == "upload_bytes_per_principal"
    check_quota(stored, 66, None, limits)
    with pytest.raises(PayloadTooLarge) as caught:
        check_quota(stored, 67, None, limits)
    assert caught.value.extra["limit"] == "upload_bytes"
    check_quota(stored, 1000, "ann", LimitsConfig(upload_bytes=0, upload_bytes_per_principal=0))
