"""``hubbub request TOPIC DATA``: a real child process against a spawned hub.

The responder is the Python client's :meth:`AsyncClient.respond` (the worker
example of ``docs/requests.md``), running in the test's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable
from typing import Any

import msgspec

from hubbub.client import AsyncClient
from tests.conftest import UNIT, HubProcess

Spawn = Callable[..., HubProcess]


async def hubbub_cmd(*args: str) -> tuple[int, str, str]:
    """Run ``python -m hubbub ARGS`` without blocking the loop; (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hubbub", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(20 * UNIT):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_request_prints_the_reply(spawn_hub: Spawn) -> None:
    """The reply of a responder is printed as one JSON line: the message object."""
    hub = spawn_hub("memory://")

    def add(data: Any) -> Any:
        return {"sum": data["a"] + data["b"]}

    async with AsyncClient(hub.url) as client:
        responder = asyncio.create_task(client.respond("svc.add", add, count=2))
        try:
            while True:  # until the responder took the topic, requests get no-responders
                status, out, err = await hubbub_cmd(
                    "request", "svc.add", '{"a": 2, "b": 3}', "--url", hub.url,
                    "--timeout", str(10 * UNIT))
                if "no responders" not in err:
                    break
            assert status == 0, err
            (line,) = out.splitlines()
            reply = msgspec.json.decode(line)
            assert reply["data"] == {"sum": 5} and reply["topic"].startswith("_inbox.")
            assert set(reply) == {"topic", "offset", "cursor", "time", "id", "data"}
            status, out, err = await hubbub_cmd(
                "request", "svc.add", '{"a": 1}', "--url", hub.url, "--timeout", "1")
            assert status == 1 and out == ""  # the handler failed, and said why
            assert "KeyError" in err and "(timeout)" not in err
        finally:
            responder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await responder


async def test_request_with_no_responder_exits_1(spawn_hub: Spawn) -> None:
    """No responder, or no reply within --timeout: exit status 1, the hub's reason on
    stderr, nothing on stdout."""
    hub = spawn_hub("memory://")
    status, out, err = await hubbub_cmd("request", "nobody.home", "hi", "--url", hub.url,
                                        "--timeout", "60")
    assert (status, out) == (1, "")
    assert err.startswith("hubbub: error: no responders") and "nobody.home" in err
    async with AsyncClient(hub.url) as client:  # a worker that takes it but never answers
        r = await client.http.post("/v1/groups/mute/pull", params={"topic": "nobody.home"})
        assert r.status_code == 200, r.text
    t0 = time.monotonic()
    status, out, err = await hubbub_cmd("request", "nobody.home", "hi", "--url", hub.url,
                                        "--timeout", "0.5")
    assert (status, out) == (1, "")
    assert err.startswith("hubbub: error: no reply") and "(timeout)" in err
    assert time.monotonic() - t0 >= 0.5


async def test_request_bad_arguments(spawn_hub: Spawn) -> None:
    """A bad timeout or topic: the hub refuses (exit 1) or argparse does (exit 2)."""
    hub = spawn_hub("memory://")
    status, _, err = await hubbub_cmd("request", "svc.x", "1", "--timeout", "-1")
    assert status == 2 and "--timeout" in err
    status, _, err = await hubbub_cmd("request", "svc.x", "1", "--url", hub.url,
                                      "--timeout", "100")
    assert status == 1 and "(timeout)" in err
    status, _, err = await hubbub_cmd("request", "svc..x", "1", "--url", hub.url)
    assert status == 1 and "(topic)" in err
    status, _, err = await hubbub_cmd("request", "svc.x")
    assert status == 2
