"""The command line and authentication: ``hubbub token``, ``--token``, public binding.

Real processes (``python -m hubbub``) against a real hub process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from tests.conftest import UNIT, free_port
from tests.test_cli import Spawn, hubbub_cmd

SECRET = "cli-tests-secret-0123456789abcdefgh"


@pytest.fixture
def auth_config(tmp_path: Path) -> Path:
    path = tmp_path / "hubbub.toml"
    path.write_text(f'[auth]\nsecret = "{SECRET}"\naudience = "hub"\n')
    return path


def test_token_prints_a_jwt(auth_config: Path) -> None:
    """``hubbub token`` prints one JWT carrying the subject, patterns and expiry asked."""
    out = hubbub_cmd("token", "--secret", SECRET, "--sub", "alice", "--pub", "chat.>",
                     "--subscribe", "chat.>", "--subscribe", "news.*", "--ttl", "30m")
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["exp"] - claims["iat"] == 1800
    assert claims["hubbub"] == {"pub": ["chat.>"], "sub": ["chat.>", "news.*"]}
    # From a config file: its secret and audience.
    out = hubbub_cmd("token", "--config", str(auth_config), "--sub", "bob", "--admin")
    claims = jwt.decode(out.stdout.strip(), SECRET, algorithms=["HS256"], audience="hub")
    assert claims["hubbub"]["admin"] is True


@pytest.mark.parametrize(("args", "message"), [
    (["--sub", "a"], "give the secret"),
    (["--secret", "short"], "at least 32 bytes"),
    (["--secret", SECRET, "--pub", "a..b"], "--pub:"),
    (["--secret", SECRET, "--ttl", "soon"], "--ttl"),
])
def test_token_usage_errors(args: list[str], message: str) -> None:
    out = subprocess.run([sys.executable, "-m", "hubbub", "token", *args], capture_output=True,
                         text=True, timeout=20 * UNIT, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 2, out
    assert message in out.stderr and out.stdout == ""


def test_client_commands_send_the_token(spawn_hub: Spawn, auth_config: Path) -> None:
    """``pub --token`` is let in; without one the hub's refusal is printed, exit 1."""
    hub = spawn_hub("memory://", "--config", str(auth_config))
    token = hubbub_cmd("token", "--config", str(auth_config), "--sub", "a",
                       "--pub", "chat.>").stdout.strip()
    out = hubbub_cmd("pub", "--url", hub.url, "--token", token, "chat.a", '{"n":1}')
    assert out.returncode == 0, out.stderr
    out = hubbub_cmd("pub", "--url", hub.url, "--timeout", "0", "chat.a", "1")
    assert out.returncode == 1 and "authentication required" in out.stderr
    out = hubbub_cmd("pub", "--url", hub.url, "--token", token, "--timeout", "0", "admin.a", "1")
    assert out.returncode == 1 and "a may not publish to admin.a" in out.stderr


def test_serve_on_a_public_address_with_auth(auth_config: Path) -> None:
    """With [auth] configured, ``serve --host 0.0.0.0`` listens."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "serve", "--host", "0.0.0.0", "--port",
         str(free_port("0.0.0.0")), "--store", "memory://", "--config", str(auth_config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:  # it exited: say why
            _, err = proc.communicate(timeout=20 * UNIT)
            raise AssertionError(f"hubbub serve exited: {err}")
        assert line.startswith("hubbub listening on http://0.0.0.0:"), line
    finally:
        proc.terminate()
        proc.communicate(timeout=20 * UNIT)
