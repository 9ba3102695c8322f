"""``hubbub admin ...``: a real child process against a spawned hub (auth off: every
client is an admin)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from tests.conftest import UNIT, HubProcess
from tests.test_cli import hubbub_cmd, json_lines, publish

Spawn = Callable[..., HubProcess]


@pytest.fixture
def hub(spawn_hub: Spawn) -> HubProcess:
    return spawn_hub("memory://")


def test_admin_lists_purges_deletes_and_cancels(hub: HubProcess) -> None:
    """connections and presence print one JSON line each (none here); topic-purge and
    topic-delete act on a topic; job-cancel cancels; an unknown one exits 1 naming why."""
    for action in ("connections", "presence"):
        out = hubbub_cmd("admin", action, "--url", hub.url)
        assert (out.returncode, out.stdout) == (0, ""), out.stderr
    for i in range(3):
        publish(hub.url, "adm.t", i)
    out = hubbub_cmd("admin", "topic-purge", "adm.t", "--url", hub.url)
    assert out.returncode == 0 and json_lines(out.stdout) == [{"topic": "adm.t", "removed": 3}]
    out = hubbub_cmd("admin", "topic-delete", "adm.t", "--url", hub.url)
    assert out.returncode == 0 and json_lines(out.stdout) == [{"topic": "adm.t",
                                                               "deleted": True}]
    out = hubbub_cmd("admin", "topic-delete", "adm.t", "--url", hub.url)
    assert out.returncode == 1 and "no topic adm.t" in out.stderr
    job = httpx.post(f"{hub.url}/v1/jobs/q", json=1, timeout=10 * UNIT).json()
    out = hubbub_cmd("admin", "job-cancel", job["id"], "--url", hub.url)
    assert out.returncode == 0 and json_lines(out.stdout)[0]["state"] == "cancelled"
    out = hubbub_cmd("admin", "disconnect", "0" * 16, "--url", hub.url)
    assert out.returncode == 1 and "no such connection" in out.stderr


def test_admin_bad_arguments_exit_2(hub: HubProcess) -> None:
    """A missing or extra argument, or an unknown action: usage error, exit 2."""
    for args in (["disconnect"], ["connections", "x"], ["nope"], ["job-cancel", "a", "b"],
                 ["connections", "--drop", "t", "c"]):
        out = hubbub_cmd("admin", *args, "--url", hub.url)
        assert out.returncode == 2, (args, out.stderr)
