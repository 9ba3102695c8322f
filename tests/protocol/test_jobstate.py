"""A job's life, without a loop or a network."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.protocol import jobstate
from hubbub.protocol.errors import Conflict, InvalidRequest
from hubbub.protocol.jobstate import FINAL, TRANSITIONS, State
from hubbub.protocol.message import JSON

T0 = 1_700_000_000_000


def _running(max_attempts: int = 3, attempts: int = 1) -> jobstate.Job:
    job = jobstate.submitted("j1", "thumbs", JSON, max_attempts, T0)
    return jobstate.taken(job, "L1", attempts, 30_000, max_attempts, T0 + 1)


def test_a_submitted_job_is_queued_at_version_one() -> None:
    job = jobstate.submitted("j1", "thumbs", JSON, 3, T0)
    assert job.state is State.QUEUED and job.version == 1 and not job.final
    assert job.to_dict()["state"] == "queued" and "lease" not in job.to_dict()


def test_every_change_grows_the_version_by_one() -> None:
    """The version is the compare-and-set token (the module's first rule)."""
    job = _running()
    assert job.version == 2 and job.lease == "L1" and job.updated == T0 + 1
    job = jobstate.progressed(job, "L1", 40, "halfway", T0 + 2)
    assert job.version == 3 and job.progress == 40.0 and job.message == "halfway"
    job = jobstate.completed(job, "L1", {"ok": True}, T0 + 3)
    assert job.version == 4 and job.state is State.SUCCEEDED and job.final
    assert job.finished == T0 + 3 and job.progress == 100.0


def test_a_stale_lease_changes_nothing() -> None:
    """Only the lease that took the job may report on it."""
    job = _running()
    for change in (lambda: jobstate.progressed(job, "L0", 1, None, T0),
                   lambda: jobstate.completed(job, "L0", None, T0),
                   lambda: jobstate.failed(job, "L0", "no", False, T0)):
        with pytest.raises(Conflict, match="stale"):
            change()


def test_a_repeated_completion_is_recognised() -> None:
    done = jobstate.completed(_running(), "L1", 1, T0 + 5)
    assert jobstate.repeated(done, "L1", State.SUCCEEDED)
    assert not jobstate.repeated(done, "L2", State.SUCCEEDED)
    with pytest.raises(Conflict, match="succeeded"):
        jobstate.completed(done, "L1", 1, T0 + 6)


def test_retries_queue_again_until_attempts_run_out() -> None:
    again = jobstate.failed(_running(max_attempts=2, attempts=1), "L1", "boom", True, T0 + 2)
    assert again.state is State.QUEUED and again.finished is None and again.error == "boom"
    last = jobstate.failed(_running(max_attempts=2, attempts=2), "L1", "boom", True, T0 + 2)
    assert last.state is State.FAILED and last.finished == T0 + 2
    final = jobstate.failed(_running(), "L1", "bad input", False, T0 + 2)
    assert final.state is State.FAILED


def test_a_lost_lease_queues_again_then_fails_and_forgets_the_lease() -> None:
    lost = jobstate.lost(_running(max_attempts=2, attempts=1), T0 + 9)
    assert lost.state is State.QUEUED and lost.lease is None
    assert "attempt 1" in (lost.error or "")
    gone = jobstate.lost(_running(max_attempts=2, attempts=2), T0 + 9)
    assert gone.state is State.FAILED and gone.error is not None and gone.error.endswith("of 2")


def test_no_transition_leaves_a_final_state() -> None:
    assert all(state not in FINAL for state, _event in TRANSITIONS)
    with pytest.raises(Conflict):
        jobstate.taken(jobstate.completed(_running(), "L1", None, T0), "L2", 2, 1, 3, T0)


def test_the_record_round_trips_with_its_version() -> None:
    job = jobstate.progressed(_running(), "L1", 10, None, T0 + 2)
    back = jobstate.decode(jobstate.encode(job), 41)
    assert back.version == 41 and back.progress == 10.0 and back.lease == "L1"


@pytest.mark.parametrize("progress", [-1, 101, float("nan"), float("inf"), True, "5"])
def test_bad_progress_is_refused(progress: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        jobstate.check_progress(progress, None)
    assert info.value.field == "progress"


def test_progress_and_message_limits() -> None:
    assert jobstate.check_progress(0, None) == (0.0, None)
    assert jobstate.check_progress(None, "x" * jobstate.MAX_MESSAGE) == (None, "x" * 1000)
    with pytest.raises(InvalidRequest):
        jobstate.check_progress(None, "x" * (jobstate.MAX_MESSAGE + 1))
    with pytest.raises(InvalidRequest):
        jobstate.check_error("")
    assert jobstate.check_error("e") == "e"


@given(st.binary(max_size=64), st.sampled_from(["application/octet-stream", "text/plain"]))
def test_envelopes_carry_any_bytes(data: bytes, content_type: str) -> None:
    """A queue message opens to the job id, bytes and content type it was made of."""
    assert jobstate.open_envelope(jobstate.envelope("j9", data, content_type)) == (
        "j9", data, content_type)


def test_json_envelopes_carry_the_json_text() -> None:
    assert jobstate.open_envelope(jobstate.envelope("j9", b'{"a":[1,2]}', JSON)) == (
        "j9", b'{"a":[1,2]}', JSON)


@pytest.mark.parametrize("raw", [b"", b"[]", b'{"data":1}', b'{"job":"j","data":1,"content_type":"x/y"}',
                                 b'{"job":"j","data":"@@@","content_type":"x/y"}'])
def test_what_is_no_envelope_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidRequest):
        jobstate.open_envelope(raw)
