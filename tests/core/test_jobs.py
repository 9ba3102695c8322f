"""Jobs in the core (``hub.jobs``): submit, take, progress, finish, retries, expiry.

The hub runs on the memory engine with a clock the tests move, so lease
expiry and job expiry need no sleeping; sweeps are called by hand.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from hubbub.config import Config, ConfigError
from hubbub.core import Hub
from hubbub.core.jobs import Taken, group_name, new_job_id, queue_topic, status_topic
from hubbub.engines import open_engine
from hubbub.protocol.errors import Conflict, InvalidRequest, InvalidTopic, NotFound, PayloadTooLarge
from hubbub.protocol.jobstate import State, completed, encode, open_envelope, submitted
from hubbub.protocol.leases import dead_letter_topic


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def hub(clock: Clock) -> AsyncIterator[Hub]:
    config = Config.from_dict({"jobs": {"keep": "1h", "lease": 10, "max_attempts": 2}})
    async with Hub(open_engine("memory://"), config, clock=clock) as h:
        yield h


async def states(hub: Hub, job_id: str) -> list[tuple[str, int, int]]:
    """(state, version, attempts) of every state told on jobs.<id>."""
    out = []
    for m in await hub.engine.read(status_topic(job_id), 0, 1000):
        doc = msgspec.json.decode(m.data)
        out.append((doc["state"], doc["version"], doc["attempts"]))
    return out


async def take(hub: Hub, queue: str = "transcode", **kw: Any) -> Taken:
    got = await hub.jobs.take(queue, **kw)
    assert got is not None
    return got


async def test_submit_queues_the_data_and_tells_the_first_state(hub: Hub) -> None:
    """A submitted job is queued: its data is on the queue topic, its state on jobs.<id>."""
    job = await hub.jobs.submit("transcode", b'{"file": "a.mp4"}')
    assert (job.queue, job.state, job.attempts, job.version) == ("transcode", State.QUEUED, 0, 1)
    assert await hub.jobs.get(job.id) == job
    (queued,) = await hub.engine.read(queue_topic("transcode"), 0, 10)
    assert open_envelope(queued.data) == (job.id, b'{"file":"a.mp4"}', "application/json")
    assert await states(hub, job.id) == [("queued", 1, 0)]


async def test_the_same_key_submits_one_job(hub: Hub) -> None:
    """Submitting twice with one idempotency key returns the first job and queues once."""
    first, made = await hub.jobs.enqueue("transcode", b"1", key="upload-7")
    again, made_again = await hub.jobs.enqueue("transcode", b"2", key="upload-7")
    other = await hub.jobs.submit("transcode", b"3", key="upload-8")
    assert made and not made_again and again == first and other.id != first.id
    assert len(await hub.engine.read(queue_topic("transcode"), 0, 10)) == 2
    assert await states(hub, first.id) == [("queued", 1, 0)]


async def test_a_resubmission_repairs_a_submission_cut_short(hub: Hub) -> None:
    """A record written without its queue message (a crash between) is queued by a retry."""
    # What a crash after the record and before the batch leaves behind:
    job_id = new_job_id("transcode", "k")
    cut = submitted(job_id, "transcode", "application/json", 2, hub.now())
    await hub.engine.put("job/" + job_id, encode(cut), hub.now(), if_version=0)
    assert await hub.jobs.take("transcode") is None
    again, made = await hub.jobs.enqueue("transcode", b"1", key="k")
    assert again.id == job_id and not made
    await hub.jobs.submit("transcode", b"1", key="k")
    assert len(await hub.engine.read(queue_topic("transcode"), 0, 10)) == 1  # keyed: once
    assert await states(hub, job_id) == [("queued", 1, 0)]
    got = await take(hub)
    assert got.job.id == job_id and got.data == b"1"


async def test_a_job_runs_reports_progress_and_succeeds(hub: Hub) -> None:
    """take -> running (attempt 1) -> progress -> succeeded; every state told once, in order."""
    job = await hub.jobs.submit("transcode", b'{"n": 1}')
    got = await take(hub)
    assert got.job.state is State.RUNNING and got.job.attempts == 1 and got.data == b'{"n":1}'
    assert got.lease == got.job.lease and got.deadline == hub.now() + 10_000
    running, deadline = await hub.jobs.progress(job.id, got.lease, 40, "hashing")
    assert (running.progress, running.message, running.version) == (40.0, "hashing", 3)
    same, _ = await hub.jobs.progress(job.id, got.lease)  # a heartbeat changes no state
    assert same == running
    done = await hub.jobs.complete(job.id, got.lease, {"sha256": "ab"})
    assert done.state is State.SUCCEEDED and done.result == {"sha256": "ab"}
    assert done.finished == hub.now() and done.progress == 100.0
    assert await hub.jobs.complete(job.id, got.lease, {"sha256": "ab"}) == done  # repeated
    assert await states(hub, job.id) == [
        ("queued", 1, 0), ("running", 2, 1), ("running", 3, 1), ("succeeded", 4, 1)]
    group = await hub.groups.info(group_name("transcode"))
    assert group.pending == 0  # acked
    assert await hub.jobs.take("transcode") is None


async def test_a_stale_lease_changes_nothing(hub: Hub, clock: Clock) -> None:
    """After a lease ran out and the job was taken again, the first worker gets Conflict."""
    job = await hub.jobs.submit("transcode", b"1")
    first = await take(hub)
    clock.now += 11  # the lease runs out; nobody swept yet
    second = await take(hub)
    assert second.job.attempts == 2 and second.lease != first.lease
    for call in (hub.jobs.progress(job.id, first.lease, 10),
                 hub.jobs.complete(job.id, first.lease, 1),
                 hub.jobs.fail(job.id, first.lease, "boom")):
        with pytest.raises(Conflict) as exc:
            await call
        assert exc.value.field == "lease"
    assert (await hub.jobs.get(job.id)) == second.job
    await hub.jobs.complete(job.id, second.lease, 2)
    with pytest.raises(Conflict):
        await hub.jobs.progress(job.id, second.lease, 50)  # finished


async def test_a_lost_lease_is_swept_then_retried_then_exhausted(hub: Hub, clock: Clock) -> None:
    """The sweep requeues a job whose lease ran out; on the last attempt it fails,
    and the group dead-letters its delivery."""
    job = await hub.jobs.submit("transcode", b"1")
    await take(hub)
    assert await hub.jobs.sweep() == 0  # the lease still holds
    clock.now += 11
    assert await hub.jobs.sweep() == 1
    queued = await hub.jobs.get(job.id)
    assert queued.state is State.QUEUED and "lease ran out on attempt 1" in str(queued.error)
    second = await take(hub)
    assert second.job.attempts == 2 and second.job.error is None
    clock.now += 11
    assert await hub.jobs.sweep() == 1
    dead = await hub.jobs.get(job.id)
    assert dead.state is State.FAILED and dead.finished == hub.now()
    assert "attempt 2 of 2" in str(dead.error)
    assert await hub.jobs.take("transcode") is None  # the group moved it to its dlq
    (letter,) = await hub.engine.read(dead_letter_topic(group_name("transcode")), 0, 10)
    assert msgspec.json.decode(letter.data)["attempts"] == 2
    assert [s for s, _, _ in await states(hub, job.id)] == [
        "queued", "running", "queued", "running", "failed"]


async def test_heartbeats_keep_a_lease(hub: Hub, clock: Clock) -> None:
    """Progress extends the lease: a worker that reports in time keeps its job."""
    job = await hub.jobs.submit("transcode", b"1")
    got = await take(hub)
    for _ in range(3):
        clock.now += 8
        await hub.jobs.progress(job.id, got.lease)
        assert await hub.jobs.sweep() == 0
    assert await hub.jobs.take("transcode") is None
    assert (await hub.jobs.get(job.id)).state is State.RUNNING


async def test_fail_with_and_without_retry(hub: Hub) -> None:
    """fail(retry) queues the job again while attempts are left; fail() is final."""
    a = await hub.jobs.submit("transcode", b'"a"')
    got = await take(hub)
    again = await hub.jobs.fail(a.id, got.lease, "disk full", retry=True)
    assert again.state is State.QUEUED and again.error == "disk full"
    assert await hub.jobs.fail(a.id, got.lease, "disk full", retry=True) == again  # repeated
    got = await take(hub)
    assert got.job.attempts == 2
    out = await hub.jobs.fail(a.id, got.lease, "disk full", retry=True)
    assert out.state is State.FAILED  # no attempt left
    b = await hub.jobs.submit("transcode", b'"b"')
    got = await take(hub)
    assert got.job.id == b.id
    out = await hub.jobs.fail(b.id, got.lease, "bad input")
    assert out.state is State.FAILED and out.attempts == 1
    assert await hub.jobs.take("transcode") is None


async def test_finished_jobs_expire(hub: Hub, clock: Clock) -> None:
    """A finished job is kept [jobs] keep seconds; a queued one is not expired."""
    done = await hub.jobs.submit("transcode", b"1")
    waiting = await hub.jobs.submit("other", b"1")
    got = await take(hub)
    await hub.jobs.complete(done.id, got.lease)
    clock.now += 3599
    assert (await hub.jobs.get(done.id)).state is State.SUCCEEDED
    clock.now += 2
    with pytest.raises(NotFound):
        await hub.jobs.get(done.id)
    for _ in range(30):
        await hub.jobs.sweep()
    assert [r.key for r in await hub.engine.expire("job/", hub.now())] == []  # swept
    assert [r.key for r in await hub.engine.scan("job/", hub.now())] == ["job/" + waiting.id]
    assert (await hub.jobs.get(waiting.id)).state is State.QUEUED


async def test_wait_answers_on_the_next_change(hub: Hub) -> None:
    """A long poll returns as soon as the version moves past the one given."""
    job = await hub.jobs.submit("transcode", b"1")
    waiter = asyncio.create_task(hub.jobs.wait(job.id, timeout=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    got = await take(hub)
    assert (await asyncio.wait_for(waiter, 2)).state is State.RUNNING
    assert (await hub.jobs.wait(job.id, version=1, timeout=5)).version == 2  # at once
    assert (await hub.jobs.wait(job.id, timeout=0.05)).version == 2  # nothing new: as it is
    await hub.jobs.complete(job.id, got.lease)
    assert (await hub.jobs.wait(job.id, version=99, timeout=5)).state is State.SUCCEEDED


async def test_bad_input_is_refused(hub: Hub) -> None:
    """Unknown or malformed ids, leases and values are errors that change nothing."""
    with pytest.raises(NotFound):
        await hub.jobs.get("0" * 32)
    for bad_id in ("a/b", "", "0" * 31, "G" * 32):
        with pytest.raises(InvalidRequest):
            await hub.jobs.get(bad_id)
    for queue in ("bad queue", "a.b", "", "x" * 60, "*"):
        with pytest.raises(InvalidTopic):
            await hub.jobs.submit(queue, b"1")
    with pytest.raises(InvalidRequest):
        await hub.jobs.submit("q", b"{not json")
    with pytest.raises(InvalidRequest):
        await hub.jobs.submit("q", b"1", key="has space")
    with pytest.raises(PayloadTooLarge):
        await hub.jobs.submit("q", b'"' + b"x" * (1 << 20) + b'"')
    job = await hub.jobs.submit("q", b"1")
    got = await take(hub, "q")
    for kw in ({"progress": -1}, {"progress": 101}, {"progress": float("nan")},
               {"progress": True}, {"message": "x" * 1001}):
        with pytest.raises(InvalidRequest):
            await hub.jobs.progress(job.id, got.lease, **kw)
    with pytest.raises(InvalidRequest):
        await hub.jobs.progress(job.id, "not-a-lease", 1)
    with pytest.raises(Conflict):
        await hub.jobs.progress(job.id, "1.000000000000", 1)
    with pytest.raises(InvalidRequest):
        await hub.jobs.fail(job.id, got.lease, "")
    with pytest.raises(InvalidRequest):
        await hub.jobs.fail(job.id, got.lease, "x", delay=-1)
    with pytest.raises(InvalidRequest):
        await hub.jobs.complete(job.id, got.lease, object())
    for kw in ({"wait": -1}, {"lease": 0}, {"lease": float("inf")}):
        with pytest.raises(InvalidRequest):
            await hub.jobs.take("q", **kw)
    assert await hub.jobs.get(job.id) == got.job  # nothing changed


def test_the_jobs_section_of_the_configuration() -> None:
    """[jobs] sets keep, lease and tries; queues take their max_deliver from it unless
    [namespaces.jobs-queue] says otherwise; bad values are refused."""
    config = Config.from_dict({"jobs": {"keep": "2d", "lease": "90s", "max_attempts": 7}})
    assert (config.jobs.keep, config.jobs.lease, config.jobs.max_attempts) == (
        172800.0, 90.0, 7)
    assert config.for_topic("jobs-queue.x").max_deliver == 7
    assert config.for_topic("jobs-queue.x").history_size == 0  # every queued job is kept
    assert config.for_topic("jobs.abc").history_age == 172800.0
    assert config.for_topic("other.x").max_deliver == 5
    own = Config.from_dict({"jobs": {"max_attempts": 7},
                            "namespaces": {"jobs-queue": {"max_deliver": 2}}})
    assert own.for_topic("jobs-queue.x").max_deliver == 2
    assert Config.from_dict({"jobs": {"keep": 0}}).for_topic("jobs.a").history_age == 0
    for bad in ({"max_attempts": 0}, {"max_attempts": True}, {"lease": 0}, {"keep": -1},
                {"lease": "soon"}, {"other": 1}):
        with pytest.raises(ConfigError):
            Config.from_dict({"jobs": bad})
    with pytest.raises(ConfigError):
        Config.from_dict({"jobs": []})


async def test_an_untold_final_state_is_told_later(hub: Hub, clock: Clock) -> None:
    """A completion written to the record but not to jobs.<id> (a crash between) is
    told by the retried call, or by the take that meets the finished job."""
    for retry_by in ("complete", "take"):
        job = await hub.jobs.submit("transcode", b"1")
        got = await take(hub)
        record = await hub.engine.get("job/" + job.id, hub.now())
        assert record is not None
        done = completed(got.job, got.lease, 5, hub.now())
        await hub.engine.put("job/" + job.id, encode(done), hub.now(),
                             if_version=record.version)  # the record only: then the crash
        assert [s for s, _, _ in await states(hub, job.id)] == ["queued", "running"]
        if retry_by == "complete":
            assert (await hub.jobs.complete(job.id, got.lease, 5)).state is State.SUCCEEDED
        else:
            clock.now += 11  # the lease runs out; the group delivers the job again
            assert await hub.jobs.take("transcode") is None  # nothing to run: acked
        assert [s for s, _, _ in await states(hub, job.id)] == [
            "queued", "running", "succeeded"]
        assert await hub.jobs.take("transcode") is None


async def test_a_lost_worker_s_late_reports_are_stale(hub: Hub, clock: Clock) -> None:
    """After the sweep took a job from its worker, that worker's reports get Conflict,
    also before anyone took the job again."""
    job = await hub.jobs.submit("transcode", b"1")
    got = await take(hub)
    clock.now += 11
    assert await hub.jobs.sweep() == 1
    for call in (hub.jobs.fail(job.id, got.lease, "late", retry=True),
                 hub.jobs.fail(job.id, got.lease, "late"),
                 hub.jobs.complete(job.id, got.lease),
                 hub.jobs.progress(job.id, got.lease)):
        with pytest.raises(Conflict):
            await call
    assert (await hub.jobs.get(job.id)).state is State.QUEUED
