"""The status table, read forwards by the hub's edge and backwards by the client."""

from __future__ import annotations

import inspect

import pytest

from hubbub.protocol import errors
from hubbub.protocol.status import TABLE, error_for_close

#: Never sent to a peer: an abstract base, and the Python caller's own bug.
NOT_SENT = {errors.HubbubError, errors.PeerError, errors.UsageError}


def _error_classes() -> list[type[errors.HubbubError]]:
    return [c for _, c in inspect.getmembers(errors, inspect.isclass)
            if issubclass(c, errors.HubbubError) and c not in NOT_SENT]


def test_rows_run_from_specific_to_general() -> None:
    """No row is shadowed: a class never comes after one of its own base classes."""
    for i, (cls, *_rest) in enumerate(TABLE):
        for earlier, *_ in TABLE[:i]:
            assert not issubclass(cls, earlier), f"{cls.__name__} is shadowed by {earlier.__name__}"


def test_statuses_are_client_or_server_errors_and_codes_are_close_codes() -> None:
    """Every row maps to a 4xx/5xx status and a close code an endpoint may send
    (RFC 6455 §7.4: 1000-2999 defined by the protocol, 4000-4999 private)."""
    for cls, status, title, close in TABLE:
        assert 400 <= status <= 599, cls
        assert title and title[0].isupper() and not title.endswith("."), cls
        assert 1000 <= close <= 1015 or 4000 <= close <= 4999, cls
        assert close not in (1004, 1005, 1006, 1015), cls  # never sent in a close frame


@pytest.mark.parametrize("cls", _error_classes())
def test_every_error_class_has_a_row(cls: type[errors.HubbubError]) -> None:
    """Each error a peer can be sent is decided by the table (its own row or a base's)."""
    assert any(issubclass(cls, row) for row, *_ in TABLE), cls.__name__


def test_close_codes_read_backwards_name_the_most_general_class() -> None:
    """A close code maps back to the last row that carries it."""
    assert error_for_close(4400) is errors.InvalidRequest
    assert error_for_close(4409) is errors.Conflict
    assert error_for_close(1007) is errors.MalformedFrame
    assert error_for_close(4008) is errors.SlowConsumer
    assert error_for_close(1000) is None
    for close in {row[3] for row in TABLE}:
        last = [cls for cls, _s, _t, c in TABLE if c == close][-1]
        assert error_for_close(close) is last
