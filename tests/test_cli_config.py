"""Where ``hubbub serve`` gets its settings: the file, then ``HUBBUB_*``
variables, then options; and ``hubbub config``, which prints the result.

The pure parts (:mod:`hubbub.cli.settings`) are tested with no process; the
layering end to end with ``hubbub serve`` and ``hubbub config`` as child
processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hubbub.cli.settings import (
    MASK,
    dump_toml,
    effective_table,
    environment_table,
    load,
    mask_url,
)
from hubbub.config import Config, ConfigError
from tests.conftest import UNIT, free_port, wait_ready

SECRET = "s3cret-" + "x" * 40


def hubbub_env(*args: str, env: dict[str, str], cwd: Path | None = None
               ) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hubbub ARGS`` with these variables added (bounded)."""
    return subprocess.run([sys.executable, "-m", "hubbub", *args], capture_output=True,
                          text=True, timeout=20 * UNIT, env={**os.environ, **env}, cwd=cwd)


# -- the environment's table (pure) --------------------------------------------------


def test_variables_map_to_file_keys() -> None:
    """``HUBBUB_SECTION__KEY`` is ``[section] key``; values read as TOML, else as text;
    text keys stay text, list keys also take commas; other variables are not keys."""
    table, names = environment_table({
        "HUBBUB_SERVER__BUFFER": "2048",
        "HUBBUB_SERVER__HEARTBEAT": "5s",
        "HUBBUB_NAMESPACES__CHAT__PRESENCE": "true",
        "HUBBUB_UPLOADS__JOBS": "transcode, thumbnails",
        "HUBBUB_NAMESPACES__NEWS__PUBLISHERS": '["alice", "bob"]',
        "HUBBUB_AUTH__SECRET": "12345678901234567890123456789012",
        "HUBBUB_PORT": "9000", "HUBBUB_URL": "http://x", "PATH": "/bin",
    })
    assert table == {
        "server": {"buffer": 2048, "heartbeat": "5s"},
        "namespaces": {"chat": {"presence": True}, "news": {"publishers": ["alice", "bob"]}},
        "uploads": {"jobs": ["transcode", "thumbnails"]},
        "auth": {"secret": "12345678901234567890123456789012"},
    }
    assert names["server.buffer"] == "HUBBUB_SERVER__BUFFER"


@pytest.mark.parametrize("name", ["HUBBUB_SERVER__", "HUBBUB___BUFFER", "HUBBUB_A____B"])
def test_a_variable_that_names_no_key_is_refused(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        environment_table({name: "1"})


def test_the_environment_is_over_the_file(tmp_path: Path) -> None:
    """A variable replaces the file's key and leaves its neighbours; a mistake in a
    variable is reported under the variable's name, one in the file under the file's."""
    path = tmp_path / "hubbub.toml"
    path.write_text("[server]\nbuffer = 10\nheartbeat = 3\n[namespaces.chat]\npresence = true\n")
    config = load(path, {"HUBBUB_SERVER__BUFFER": "20",
                         "HUBBUB_NAMESPACES__CHAT__HISTORY_SIZE": "5"})
    assert (config.server.buffer, config.server.heartbeat) == (20, 3.0)
    assert (config.namespaces["chat"].presence, config.namespaces["chat"].history_size) == (
        True, 5)
    with pytest.raises(ConfigError, match=r"^HUBBUB_SERVER__BUFFER: server\.buffer: expected"):
        load(path, {"HUBBUB_SERVER__BUFFER": "many"})
    with pytest.raises(ConfigError, match=r"^HUBBUB_SERVE__X: unknown section"):
        load(None, {"HUBBUB_SERVE__X": "1"})
    path.write_text("[server]\nbuffer = -1\n")
    with pytest.raises(ConfigError, match=r"^server\.buffer: expected"):
        load(path, {"HUBBUB_SERVER__BUFFER": "20"})


# -- what `hubbub config` prints (pure) ----------------------------------------------


def test_the_effective_table_masks_secrets() -> None:
    """The secret and API keys never show; everything else reads back as it was."""
    raw = {"server": {"buffer": 7}, "auth": {
        "secret": SECRET, "issuer": "https://login.example.com",
        "api_keys": {"hk_3b1f9c2e8d7a6f50": {"subject": "billing", "pub": ["jobs-queue.b"]}},
        "anonymous": {"sub": ["public.>"]}}}
    text = dump_toml(effective_table(Config.from_dict(raw)))
    assert SECRET not in text and "hk_3b1f9c2e8d7a6f50" not in text
    shown = tomllib.loads(text)
    assert shown["auth"]["secret"] == MASK
    assert shown["auth"]["issuer"] == "https://login.example.com"
    [(digest, grant)] = shown["auth"]["api_keys"].items()
    assert digest.startswith("sha256:") and grant == {"subject": "billing",
                                                       "pub": ["jobs-queue.b"], "sub": []}
    assert shown["auth"]["anonymous"] == {"pub": [], "sub": ["public.>"]}
    without_auth = {k: v for k, v in shown.items() if k != "auth"}
    assert Config.from_dict(without_auth).server.buffer == 7


def test_a_configuration_read_back_is_the_same() -> None:
    """What ``hubbub config`` prints (no secrets set) is a file that loads to the
    same configuration."""
    raw = {"defaults": {"history_size": 5, "history_age": "1h"},
           "namespaces": {"chat": {"presence": True, "subscribers": ["*"]}},
           "uploads": {"jobs": ["transcode"], "dir": "/srv/up \"loads\""},
           "jobs": {"lease": "1m"}}
    config = Config.from_dict(raw)
    assert Config.from_dict(tomllib.loads(dump_toml(effective_table(config)))) == config


@given(st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.one_of(st.text(), st.integers(), st.booleans(), st.lists(st.text(), max_size=3),
              st.floats(allow_nan=False, allow_infinity=False)),
    max_size=6))
def test_dump_toml_reads_back(table: dict[str, Any]) -> None:
    """Any table of text, numbers, booleans and lists of text reads back equal."""
    back = tomllib.loads(dump_toml({"t": table}))["t"]
    assert back == {k: list(v) if isinstance(v, list) else v for k, v in table.items()}


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:pw@redis:6379/0", f"redis://:{MASK}@redis:6379/0"),
    ("rediss://user:pw@[::1]:6380/1?prefix=a", f"rediss://user:{MASK}@[::1]:6380/1?prefix=a"),
    ("sqlite:///./hub.db", "sqlite:///./hub.db"),
])
def test_store_passwords_are_masked(url: str, shown: str) -> None:
    assert mask_url(url) == shown


# -- the command line ----------------------------------------------------------------


def test_config_prints_the_layers(tmp_path: Path) -> None:
    """``hubbub config``: the file, then variables, then options; secrets masked."""
    (tmp_path / "hubbub.toml").write_text(
        f'[server]\nbuffer = 10\nheartbeat = 3\n[auth]\nsecret = "{SECRET}"\n')
    out = hubbub_env("config", "--port", "9001", env={
        "HUBBUB_CONFIG": "hubbub.toml", "HUBBUB_SERVER__BUFFER": "20", "HUBBUB_PORT": "9000",
        "HUBBUB_HOST": "0.0.0.0", "HUBBUB_STORE": "redis://:hunter2@redis:6379/0",
        "HUBBUB_ACCESS_LOG": "yes"}, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert SECRET not in out.stdout and "hunter2" not in out.stdout
    shown = tomllib.loads(out.stdout)
    assert (shown["server"]["buffer"], shown["server"]["heartbeat"]) == (20, 3)
    assert shown["auth"]["secret"] == MASK
    options = [line for line in out.stdout.splitlines() if line.startswith("#   --")]
    assert "#   --port = 9001" in options  # the option over the variable
    assert "#   --host = 0.0.0.0" in options
    assert f"#   --store = redis://:{MASK}@redis:6379/0" in options
    assert "#   --access-log = True" in options


@pytest.mark.parametrize(("env", "message"), [
    ({"HUBBUB_PORT": "http"}, "HUBBUB_PORT: expected a port from 0 to 65535, got 'http'"),
    ({"HUBBUB_LOG_LEVEL": "loud"}, "HUBBUB_LOG_LEVEL: expected one of critical"),
    ({"HUBBUB_INSECURE": "maybe"}, "HUBBUB_INSECURE: expected one of 1, true"),
    ({"HUBBUB_SERVER__BUFFER": "0"}, "HUBBUB_SERVER__BUFFER: server.buffer: expected a "
                                     "positive integer"),
    ({"HUBBUB_AUTH__SECRET": "short"}, "HUBBUB_AUTH__SECRET: auth.secret: must be at least"),
])
@pytest.mark.parametrize("command", ["config", "serve"])
def test_a_bad_variable_is_named(command: str, env: dict[str, str], message: str) -> None:
    """A variable ``serve`` cannot use stops it with exit status 2 and says which."""
    out = hubbub_env(command, "--store", "memory://", env=env)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_a_bad_serve_variable_does_not_stop_other_commands() -> None:
    out = hubbub_env("token", "--secret", SECRET, env={"HUBBUB_PORT": "http"})
    assert out.returncode == 0, out.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(10 * UNIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_serve_runs_with_the_environment(served: list[subprocess.Popen[bytes]]) -> None:
    """``hubbub serve`` with nothing on its command line listens where HUBBUB_PORT
    says, on the store HUBBUB_STORE names, with HUBBUB_NAMESPACES__* settings."""
    port = free_port()
    env = {**os.environ, "HUBBUB_PORT": str(port), "HUBBUB_STORE": "memory://",
           "HUBBUB_NAMESPACES__CHAT__HISTORY_SIZE": "2"}
    served.append(subprocess.Popen([sys.executable, "-m", "hubbub", "serve"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, served[0])
    for n in range(3):
        assert httpx.post(f"{url}/v1/topics/chat.a", json=n).status_code == 201
    page = httpx.get(f"{url}/v1/topics/chat.a/messages", params={"after": "start"}).json()
    assert [m["data"] for m in page["messages"]] == [1, 2]
