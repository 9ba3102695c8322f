"""Consumer groups as workers use them: many at once, killed mid-lease, a killed hub, the CLI.

Workers are tasks with their own HTTP client (:class:`hubbub.client.AsyncClient`)
or child processes; hubs are a real uvicorn server in the test's loop
(``hub_server``) or ``hubbub serve`` in a child process (``spawn_hub``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from hubbub.client import AsyncClient
from hubbub.config import Config
from tests.clocks import Clock, clocked_server
from tests.conftest import UNIT, HubProcess, HubServer

Spawn = Callable[..., HubProcess]


async def publish_many(client: httpx.AsyncClient, topic: str, n: int) -> list[str]:
    """Publish ``n`` messages 0..n-1 in batches; their message ids, in order."""
    ids: list[str] = []
    for start in range(0, n, 1000):
        batch = [{"topic": topic, "data": i} for i in range(start, min(n, start + 1000))]
        r = await client.post("/v1/publish", json=batch)
        assert r.status_code == 201, r.text
        ids += [receipt["id"] for receipt in r.json()["results"]]
    return ids


async def run_workers(url: str, group: str, topic: str, n: int, workers: int) -> list[Any]:
    """``workers`` tasks pull (max 100) and ack until ``n`` messages were processed."""
    done: list[tuple[str, int]] = []

    async def work() -> None:
        async with AsyncClient(url) as hub:
            g = hub.group(group, [topic])
            while len(done) < n:
                deliveries = await g.pull(100, wait=0.5)
                if deliveries:
                    results = await g.ack([d.lease for d in deliveries])
                    assert set(results.values()) == {"ok"}
                    done.extend((d.message["id"], d.attempt) for d in deliveries)

    await asyncio.gather(*(work() for _ in range(workers)))
    return done


async def check_each_once(hub_server: HubServer, n: int) -> None:
    async with hub_server.client() as c:
        r = await c.post("/v1/groups/load/pull", params={"topic": "load.t", "start": "end"})
        assert r.status_code == 200
        ids = await publish_many(c, "load.t", n)
        async with asyncio.timeout(60 * UNIT):
            done = await run_workers(hub_server.url, "load", "load.t", n, workers=4)
        assert sorted(i for i, _ in done) == sorted(ids)  # each processed exactly once
        assert {attempt for _, attempt in done} == {1}
        assert (await c.get("/v1/groups/load")).json()["pending"] == 0


async def test_four_workers_process_each_message_once(hub_server: HubServer) -> None:
    """4 workers share 10,000 messages: every message is processed once, on its first try."""
    await check_each_once(hub_server, 10_000)


#: A worker that leases 20 messages for 60 s, acks 10, says which, and hangs.
DOOMED_WORKER = """
import json, sys, time, httpx
url = sys.argv[1]
r = httpx.post(url + "/v1/groups/kill/pull", params={"max": 20, "lease": 60})
items = r.json()["messages"]
acked, held = items[:10], items[10:]
r = httpx.post(url + "/v1/groups/kill/ack", json={"ids": [x["lease"] for x in acked]})
assert r.status_code == 200, r.text
print(json.dumps({"acked": [x["id"] for x in acked], "held": [x["id"] for x in held]}),
      flush=True)
time.sleep(600)
"""


async def test_a_killed_workers_messages_reach_the_others(
    engine: str, tmp_path: Path, config: Config
) -> None:
    """A worker SIGKILLed while holding leases loses nothing: after the lease, others get them.

    The hub's clock is the test's: the lease runs out when the test moves it.
    """
    clock = Clock()
    async with clocked_server(engine, tmp_path, config, clock) as hub_server:
        async with hub_server.client() as c:
            await c.post("/v1/groups/kill/pull", params={"topic": "kill.t"})
            ids = await publish_many(c, "kill.t", 100)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", DOOMED_WORKER, hub_server.url, stdout=asyncio.subprocess.PIPE)
        try:
            async with asyncio.timeout(15 * UNIT):
                line = await proc.stdout.readline()  # type: ignore[union-attr]
            report = json.loads(line)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        assert len(report["acked"]) == len(report["held"]) == 10
        clock.advance(60)
        async with asyncio.timeout(30 * UNIT):
            done = await run_workers(hub_server.url, "kill", "kill.t", 90, workers=3)
    counts = Counter(i for i, _ in done)
    assert sorted(counts.elements()) == sorted(set(ids) - set(report["acked"]))
    assert max(counts.values()) == 1
    retried = {i for i, attempt in done if attempt == 2}
    assert retried == set(report["held"])


async def test_group_state_survives_kill_9_on_sqlite(spawn_hub: Spawn, tmp_path: Path) -> None:
    """After kill -9 a restarted hub keeps the group: held leases come back at their
    deadline (attempt 2), untaken messages come once, acked ones never."""
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = spawn_hub(store)
    async with httpx.AsyncClient(base_url=hub.url, timeout=10 * UNIT) as c:
        assert (await c.post("/v1/groups/dur/pull", params={"topic": "dur.*"})).status_code == 200
        await publish_many(c, "dur.t", 10)
        r = await c.post("/v1/groups/dur/pull", params={"max": 6, "lease": 3})
        taken = r.json()["messages"]
        r = await c.post("/v1/groups/dur/ack", json={"ids": [x["lease"] for x in taken[:3]]})
        assert r.status_code == 200
    hub.kill()
    hub = spawn_hub(store)
    got: dict[int, tuple[int, int]] = {}
    async with httpx.AsyncClient(base_url=hub.url, timeout=10 * UNIT) as c:
        info = (await c.get("/v1/groups/dur")).json()
        assert info["topics"] == ["dur.*"] and info["pending"] == 3
        async with asyncio.timeout(15 * UNIT):
            while len(got) < 7:
                r = await c.post("/v1/groups/dur/pull", params={"max": 10, "wait": 1})
                now = int(time.time() * 1000)
                for x in r.json()["messages"]:
                    assert x["data"] not in got
                    got[x["data"]] = (x["attempt"], now)
                    ack = await c.post("/v1/groups/dur/ack", json={"ids": [x["lease"]]})
                    assert ack.status_code == 200
        await asyncio.sleep(0.5)
        assert (await c.post("/v1/groups/dur/pull", params={"max": 10})).json() == {
            "messages": []}
    assert sorted(got) == list(range(3, 10))
    for held in taken[3:]:
        attempt, at = got[held["data"]]
        assert attempt == 2 and at >= held["deadline"] - 50
    assert {got[i][0] for i in range(6, 10)} == {1}


# -- the command line ------------------------------------------------------------------


def hubbub_cmd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubbub", *args], capture_output=True,
                          text=True, timeout=20 * UNIT)


def test_sub_group_prints_and_acks(spawn_hub: Spawn) -> None:
    """`hubbub sub --group` prints each leased item as a JSON line and acks it; a second
    worker goes on where the first stopped."""
    hub = spawn_hub("memory://")
    for i in range(5):
        assert httpx.post(f"{hub.url}/v1/topics/cli.t", json=i).status_code == 201
    first = hubbub_cmd("sub", "cli.t", "--group", "cli", "--start", "start", "--count", "3",
                       "--url", hub.url)
    assert first.returncode == 0, first.stderr
    lines = [msgspec.json.decode(line) for line in first.stdout.splitlines()]
    assert [x["data"] for x in lines] == [0, 1, 2]
    assert all(list(x)[:3] == ["lease", "attempt", "deadline"] and x["topic"] == "cli.t"
               for x in lines)
    assert httpx.get(f"{hub.url}/v1/groups/cli").json()["pending"] == 0
    second = hubbub_cmd("sub", "cli.t", "--group", "cli", "--count", "2", "--url", hub.url)
    assert [msgspec.json.decode(line)["data"] for line in second.stdout.splitlines()] == [3, 4]
    assert httpx.get(f"{hub.url}/v1/groups/cli").json()["pending"] == 0


@pytest.mark.parametrize("args", [
    ["--group", "g", "--after", "start"],
    ["--group", "g", "--transport", "sse"],
    ["--start", "start"],
])
def test_sub_group_argument_errors_exit_2(args: list[str]) -> None:
    """Options that do not go with --group (or need it) are usage errors."""
    done = hubbub_cmd("sub", "x.y", "--url", "http://127.0.0.1:9", *args)
    assert done.returncode == 2 and "hubbub: error:" in done.stderr
