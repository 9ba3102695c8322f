"""``hubbub worker`` processes against a real hub: SIGKILL one mid-job, the job is
retried by another and completes; ``upload --job --follow`` and ``job`` end to end.

The hub's clock is the test's (:mod:`tests.clocks`): a killed worker's lease runs
out when the test moves it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from hubbub.config import Config
from tests.clocks import Clock, clock_fixture, clocked_hub_server  # noqa: F401 (fixtures)
from tests.conftest import UNIT, HubServer

ROOT = Path(__file__).resolve().parent.parent
#: A job's lease, in seconds: it runs out only when a test moves the clock.
LEASE = 60


@pytest.fixture
def config() -> Config:
    return Config.from_dict({"jobs": {"max_attempts": 3, "lease": LEASE},
                             "uploads": {"jobs": ["transcode"]}})


async def hubbub(*args: str, cwd: Path = ROOT) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubbub", *args, cwd=cwd,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


async def job_states(client: httpx.AsyncClient, job_id: str) -> list[tuple[str, int]]:
    r = await client.get(f"/v1/topics/jobs.{job_id}/messages",
                         params={"after": "start", "limit": 1000})
    return [(m["data"]["state"], m["data"]["attempts"]) for m in r.json()["messages"]]


async def test_a_killed_worker_s_job_is_retried_and_completes(
    hub_server: HubServer, client: httpx.AsyncClient, clock: Clock
) -> None:
    """SIGKILL a worker mid-job: after its lease another worker takes the job
    (attempt 2) and completes it."""
    r = await client.post("/v1/jobs/transcode", json={"steps": 20, "pause": 0.1})
    job_id = r.json()["id"]
    run = ("worker", "transcode", "--run", "tests.job_handlers:hash_slowly",
           "--url", hub_server.url, "--count", "1")
    first = await hubbub(*run)
    try:
        async with asyncio.timeout(15 * UNIT):
            while True:
                doc = (await client.get(f"/v1/jobs/{job_id}", params={
                    "wait": 5, "version": r.json()["version"]})).json()
                if doc["state"] == "running" and (doc["progress"] or 0) >= 10:
                    break
        first.send_signal(signal.SIGKILL)
        await first.wait()
        clock.advance(LEASE)
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    second = await hubbub(*run)
    out, err = await asyncio.wait_for(second.communicate(), 30 * UNIT)
    assert second.returncode == 0, err.decode()
    (line,) = out.decode().splitlines()
    done = json.loads(line)
    assert (done["id"], done["state"], done["attempts"]) == (job_id, "succeeded", 2)
    assert done["result"]["steps"] == 20
    states = await job_states(client, job_id)
    assert states[0] == ("queued", 0) and states[-1] == ("succeeded", 2)
    # The sweep makes the lost job queued again, unless the second worker's take
    # came first: it takes the job over from the dead lease (both are correct).
    retaken = states.index(("running", 2))
    assert set(states[1:retaken]) - {("queued", 1)} == {("running", 1)}
    assert set(states[retaken:-1]) == {("running", 2)}
    doc = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert doc == done


async def test_upload_with_a_job_followed_to_the_end(
    hub_server: HubServer, client: httpx.AsyncClient, tmp_path: Path
) -> None:
    """`hubbub upload FILE --job transcode --follow` prints the upload with its job,
    then the finished job; `hubbub job ID` prints it again."""
    video = tmp_path / "video.mp4"
    video.write_bytes(os.urandom(300_000))
    worker = await hubbub("worker", "transcode", "--run", "tests.job_handlers:hash_slowly",
                          "--url", hub_server.url, "--count", "1")
    try:
        up = await hubbub("upload", str(video), "--url", hub_server.url, "--job", "transcode",
                          "--follow", "--chunk-size", "100000",
                          "--state", str(tmp_path / "state.json"))
        out, err = await asyncio.wait_for(up.communicate(), 30 * UNIT)
        assert up.returncode == 0, err.decode()
        upload, job = (json.loads(line) for line in out.decode().splitlines())
        assert upload["size"] == 300_000 and upload["job"] == job["id"]
        assert job["state"] == "succeeded" and job["queue"] == "transcode"
        await asyncio.wait_for(worker.wait(), 10 * UNIT)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    show = await hubbub("job", job["id"], "--url", hub_server.url)
    out, _ = await show.communicate()
    assert json.loads(out) == job
    follow = await hubbub("job", job["id"], "--follow", "--url", hub_server.url)
    out, _ = await follow.communicate()
    states: list[dict[str, Any]] = [json.loads(line) for line in out.decode().splitlines()]
    assert states[0]["state"] == "queued" and states[-1] == job


async def test_worker_arguments_are_checked(hub_server: HubServer) -> None:
    """A --run that names nothing callable exits 2 with a message."""
    for spec in ("nomodule", "tests.job_handlers:missing", "no_such_module_x:f"):
        proc = await hubbub("worker", "q", "--run", spec, "--url", hub_server.url)
        _, err = await proc.communicate()
        assert proc.returncode == 2 and b"hubbub: error:" in err, err
