"""The command line when something is wrong: a hub that is not there, a lost
hub, malformed JSON, a refused token, a refused job queue. Each says what
happened and which setting to change.

Real processes (``python -m hubbub``) against real hub processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import UNIT, free_port
from tests.test_cli import HubProcess, Spawn, history, hubbub_cmd, json_lines, publish

SECRET = "cli-errors-secret-0123456789abcdefgh"


def with_env(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hubbub", *args], capture_output=True,
                          text=True, timeout=20 * UNIT, env={**os.environ, **env})


@pytest.mark.parametrize("args", [
    ["pub", "t.a", "1"],
    ["sub", "t.a"],
    ["sub", "t.a", "--group", "g"],
    ["request", "svc.echo", "1"],
    ["job", "0123456789abcdef"],
    ["worker", "q", "--run", "json:dumps"],
])
def test_an_unreachable_hub_fails_at_once(args: list[str]) -> None:
    """With no hub at the address, every client command exits 1 saying so and naming
    the settings that choose the address (``sub`` does not retry in silence)."""
    out = hubbub_cmd(*args, "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1
    assert "cannot reach the hub at http://127.0.0.1:" in out.stderr
    assert "--url or $HUBBUB_URL" in out.stderr and "Traceback" not in out.stderr


def test_upload_to_an_unreachable_hub_fails_at_once(tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"x" * 100)
    out = hubbub_cmd("upload", str(source), "--state", str(tmp_path / "s.json"),
                     "--url", f"http://127.0.0.1:{free_port()}")
    assert out.returncode == 1 and "cannot reach the hub" in out.stderr


def test_hubbub_url_and_token_from_the_environment(spawn_hub: Spawn, tmp_path: Path) -> None:
    """``HUBBUB_URL`` and ``HUBBUB_TOKEN`` stand for ``--url`` and ``--token``."""
    config = tmp_path / "hubbub.toml"
    config.write_text(f'[auth]\nsecret = "{SECRET}"\n')
    hub = spawn_hub("memory://", "--config", str(config))
    token = hubbub_cmd("token", "--secret", SECRET, "--sub", "a", "--pub", "env.>",
                       "--subscribe", "env.>").stdout.strip()
    env = {"HUBBUB_URL": hub.url, "HUBBUB_TOKEN": token}
    out = with_env("pub", "env.a", '{"n": 1}', env=env)
    assert out.returncode == 0, out.stderr
    out = with_env("sub", "env.a", "--after", "start", "--count", "1", env=env)
    assert [m["data"] for m in json_lines(out.stdout)] == [{"n": 1}]


def test_a_refused_credential_names_the_setting(spawn_hub: Spawn, tmp_path: Path) -> None:
    """No token: the error says how to give one; a token that does not allow the
    topic: the error says so."""
    config = tmp_path / "hubbub.toml"
    config.write_text(f'[auth]\nsecret = "{SECRET}"\n')
    hub = spawn_hub("memory://", "--config", str(config))
    out = hubbub_cmd("pub", "chat.a", "1", "--url", hub.url)
    assert out.returncode == 1 and "--token or $HUBBUB_TOKEN" in out.stderr
    token = hubbub_cmd("token", "--secret", SECRET, "--pub", "other.>").stdout.strip()
    out = hubbub_cmd("pub", "chat.a", "1", "--url", hub.url, "--token", token)
    assert out.returncode == 1 and "does not allow this" in out.stderr


@pytest.fixture
def hub(spawn_hub: Spawn) -> HubProcess:
    return spawn_hub("memory://")


@pytest.mark.parametrize("data", ['{"text":hi}', "[1, 2", '"unterminated', '  {"a": }'])
@pytest.mark.parametrize("command", ["pub", "request"])
def test_malformed_json_is_an_error(hub: HubProcess, command: str, data: str) -> None:
    """DATA that begins like JSON but is not JSON is refused (exit 2), nothing is sent."""
    out = hubbub_cmd(command, "cli.json", data, "--url", hub.url)
    assert out.returncode == 2
    assert "DATA is not valid JSON" in out.stderr and "--text" in out.stderr
    assert history(hub.url, "cli.json") == []


def test_text_sends_data_as_a_string(hub: HubProcess) -> None:
    """``--text`` publishes DATA as a JSON string whatever it looks like."""
    for data in ('{"text":hi}', "42", "plain"):
        out = hubbub_cmd("pub", "cli.text", data, "--text", "--url", hub.url)
        assert out.returncode == 0, out.stderr
    assert [m["data"] for m in history(hub.url, "cli.text")] == ['{"text":hi}', "42", "plain"]
    out = hubbub_cmd("pub", "cli.text", "x", "--text", "--content-type", "text/plain",
                     "--url", hub.url)
    assert out.returncode == 2


def test_sub_says_when_it_reconnects(spawn_hub: Spawn, tmp_path: Path) -> None:
    """Once connected, ``sub`` keeps following through a restart of the hub, saying
    on stderr that it reconnects, and prints what came meanwhile."""
    store, port = f"sqlite:///{tmp_path / 'hub.db'}", free_port()
    hub = spawn_hub(store, port=port)
    first = publish(hub.url, "cli.back", 0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "sub", "cli.back", "--after", first["cursor"],
         "--count", "2", "--url", hub.url, "--transport", "sse"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        publish(hub.url, "cli.back", 1)
        assert proc.stdout is not None and proc.stderr is not None
        assert json_lines(proc.stdout.readline())[0]["data"] == 1
        assert hub.terminate() == 0
        notice = proc.stderr.readline()
        assert notice.startswith("hubbub: warning: lost the hub at ") and "reconnecting" in notice
        hub = spawn_hub(store, port=port)
        publish(hub.url, "cli.back", 2)
        out, _ = proc.communicate(timeout=30 * UNIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert [m["data"] for m in json_lines(out)] == [2]


def test_a_refused_job_queue_names_the_setting(hub: HubProcess, tmp_path: Path) -> None:
    """``upload --job`` on a hub whose ``[uploads] jobs`` does not list the queue: the
    error names the setting (and its variable)."""
    source = tmp_path / "video.mp4"
    source.write_bytes(b"frames" * 100)
    out = hubbub_cmd("upload", str(source), "--job", "transcode", "--url", hub.url,
                     "--state", str(tmp_path / "s.json"))
    assert out.returncode == 1
    assert "[uploads] jobs" in out.stderr and "HUBBUB_UPLOADS__JOBS" in out.stderr
