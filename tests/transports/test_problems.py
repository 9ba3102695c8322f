"""Errors to problem documents, ``err`` frames and close codes:
:mod:`hubbub.transports.problems`, no hub, no loop."""

from __future__ import annotations

import json

import pytest

from hubbub.protocol import errors
from hubbub.protocol.status import TABLE
from hubbub.transports.problems import (
    PROBLEM,
    TYPE_BASE,
    close_code,
    lookup,
    problem,
    problem_from,
    ws_error,
)


@pytest.mark.parametrize("cls, status, title, close", TABLE, ids=[row[0].__name__ for row in TABLE])
def test_each_error_class_maps_to_its_own_row(
        cls: type[errors.HubbubError], status: int, title: str, close: int) -> None:
    """The first matching row decides, so every class gets its own status, even the
    subclasses listed before their bases (GapError before Conflict)."""
    exc = cls("what happened")
    assert lookup(exc) == (status, title, close)
    assert close_code(exc) == close


def test_an_error_in_no_row_is_an_internal_error() -> None:
    """The base class (and anything the table does not list) is a 500 and close 1011."""
    assert lookup(errors.HubbubError("x")) == (500, "Internal error", 1011)


def test_a_problem_document_has_the_rfc_9457_members_and_hubbub_s() -> None:
    """type, title, status, detail and instance, plus code, field and the error's data;
    members that are None are left out."""
    exc = errors.GapError("history lost", field="after", topic="t", to=None)
    response = problem_from(exc, instance="/v1/topics/t/messages")
    assert response.status_code == 409
    assert response.media_type == PROBLEM
    assert json.loads(response.body) == {
        "type": TYPE_BASE + "gap", "title": "History lost", "status": 409,
        "detail": "history lost", "code": "gap", "field": "after", "topic": "t",
        "instance": "/v1/topics/t/messages"}


def test_a_temporary_error_says_so_and_a_503_says_when_to_retry() -> None:
    """``temporary`` appears only when true; every 503 carries Retry-After."""
    busy = problem_from(errors.Unavailable("the store is busy"))
    assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
    assert json.loads(busy.body)["temporary"] is True
    bad = problem_from(errors.InvalidTopic("bad topic", field="topic"))
    assert "temporary" not in json.loads(bad.body) and "retry-after" not in bad.headers
    assert problem(503, "Draining", "the hub is draining", code="draining",
                   headers={"X-A": "1"}).headers["retry-after"] == "1"


@pytest.mark.parametrize("field, challenge", [
    (None, 'Bearer realm="hubbub"'),
    ("Authorization", 'Bearer realm="hubbub", error="invalid_token"'),
    ("token", 'Bearer realm="hubbub", error="invalid_token"'),
])
def test_a_401_names_the_scheme_and_a_refused_token(field: str | None, challenge: str) -> None:
    """RFC 6750 §3: no error code without credentials; invalid_token for a refused one."""
    response = problem_from(errors.Unauthorized("no", field=field))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == challenge


def test_an_err_frame_carries_the_op_id_and_the_error_s_fields() -> None:
    """The ``err`` frame echoes the op's id and what the error lets a peer see."""
    exc = errors.LimitExceeded("too many", limit="subscriptions_per_principal")
    assert ws_error(exc, 7) == {"op": "err", "id": 7, "code": "limit-exceeded",
                                "message": "too many", "limit": "subscriptions_per_principal"}
    assert ws_error(errors.NotFound("gone"))["id"] is None
