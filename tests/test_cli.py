"""The ``hubbub`` command line, and the client it runs on, against a spawned hub.

Every command runs as a real child process (``python -m hubbub``) with a
bounded wait; the hub is ``hubbub serve`` in another process.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

import hubbub
from hubbub.client import TRANSPORTS, AsyncClient
from hubbub.protocol.cursor import decode as decode_cursor
from hubbub.protocol.errors import InvalidTopic, Unavailable
from tests.conftest import UNIT, HubProcess, free_port

Spawn = Callable[..., HubProcess]


def hubbub_cmd(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m hubbub ARGS`` to completion (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "hubbub", *args], input=input.decode() if input else None,
        capture_output=True, text=True, timeout=20 * UNIT,
    )


def json_lines(text: str) -> list[Any]:
    return [msgspec.json.decode(line) for line in text.splitlines()]


def history(url: str, topic: str) -> list[dict[str, Any]]:
    """Every retained message of a topic, read over plain HTTP."""
    r = httpx.get(f"{url}/v1/topics/{topic}/messages", params={"after": "start", "limit": 1000})
    r.raise_for_status()
    messages: list[dict[str, Any]] = r.json()["messages"]
    return messages


def publish(url: str, topic: str, value: Any) -> dict[str, Any]:
    """Publish over plain HTTP (quicker than a process, for setting up ``sub`` tests)."""
    r = httpx.post(f"{url}/v1/topics/{topic}", json=value, timeout=10 * UNIT)
    assert r.status_code == 201, r.text
    receipt: dict[str, Any] = r.json()
    return receipt


@pytest.fixture
def hub(spawn_hub: Spawn) -> HubProcess:
    return spawn_hub("memory://")


# -- the command line ----------------------------------------------------------------


def test_version() -> None:
    """``--version`` prints the package version, from the module and the console script."""
    assert hubbub_cmd("--version").stdout == f"hubbub {hubbub.__version__}\n"
    script = Path(sys.executable).parent / "hubbub"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True,
                         timeout=20 * UNIT)
    assert (out.returncode, out.stdout) == (0, f"hubbub {hubbub.__version__}\n")


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["pub", "t.a"],
    ["sub"],
    ["sub", "t.a", "--transport", "pigeon"],
    ["sub", "t.a", "--count", "0"],
    ["serve", "--port", "70000"],
    ["pub", "t.a", "1", "--timeout", "soon"],
])
def test_bad_arguments_exit_2(args: list[str]) -> None:
    """Bad arguments exit 2 with the usage and a message saying what is wrong."""
    out = hubbub_cmd(*args)
    assert out.returncode == 2
    assert "usage: hubbub" in out.stderr and "error:" in out.stderr
    assert out.stdout == ""


@pytest.mark.parametrize(("config", "message"), [
    (None, "No such file"),
    ("[defaults\n", "invalid configuration"),
    ("[defaults]\nhistory_size = -1\n", "defaults.history_size"),
    ("[nonsense]\n", "unknown section"),
])
def test_serve_config_errors_exit_2(tmp_path: Path, config: str | None, message: str) -> None:
    """A configuration file that is missing or invalid stops ``serve`` with exit 2 and says why."""
    path = tmp_path / "hubbub.toml"
    if config is not None:
        path.write_text(config)
    out = hubbub_cmd("serve", "--port", str(free_port()), "--config", str(path))
    assert out.returncode == 2
    assert "hubbub: error: invalid configuration" in out.stderr and message in out.stderr


def test_serve_unknown_store_exits_2() -> None:
    """An unknown store URL stops ``serve`` with exit 2."""
    out = hubbub_cmd("serve", "--port", str(free_port()), "--store", "carrier-pigeon://x")
    assert out.returncode == 2
    assert "unknown store URL" in out.stderr


def test_serve_store_that_will_not_open_exits_1(tmp_path: Path) -> None:
    """A store that cannot be opened stops ``serve`` with exit 1 and one clear line."""
    (tmp_path / "hub.db").mkdir()  # a directory where the database file should be
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    out = hubbub_cmd("serve", "--port", str(free_port()), "--store", store)
    assert out.returncode == 1
    assert f"hubbub: error: cannot open the store ({store})" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_port_taken_exits_1(hub: HubProcess) -> None:
    """A port already taken stops a second ``serve`` with exit 1 and the reason."""
    out = hubbub_cmd("serve", "--port", str(hub.port), "--store", "memory://")
    assert out.returncode == 1 and "address already in use" in out.stderr


def test_pub_prints_the_receipt(hub: HubProcess) -> None:
    """``pub`` prints the 201 receipt as one JSON line; offsets count up."""
    for offset in (1, 2):
        out = hubbub_cmd("pub", "cli.receipt", '{"n": 1}', "--url", hub.url)
        assert out.returncode == 0, out.stderr
        (receipt,) = json_lines(out.stdout)
        assert receipt["topic"] == "cli.receipt" and receipt["offset"] == offset
        assert set(receipt) >= {"cursor", "id", "time"}


def test_pub_payload_forms(hub: HubProcess, tmp_path: Path) -> None:
    """DATA is JSON when it parses, else a JSON string; --content-type and @FILE send bytes."""
    (tmp_path / "doc.json").write_text('{"from": "file"}')
    (tmp_path / "blob").write_bytes(b"\x00\x01raw")
    cases = [
        (['{"a": [1, 2]}'], b"", {"a": [1, 2]}, None),
        (["hello world"], b"", "hello world", None),
        (["42"], b"", 42, None),
        (["plain text", "--content-type", "text/plain"], b"", "cGxhaW4gdGV4dA==", "text/plain"),
        ([f"@{tmp_path / 'doc.json'}"], b"", {"from": "file"}, None),
        ([f"@{tmp_path / 'blob'}"], b"", "AAFyYXc=", "application/octet-stream"),
        (["@-"], b"from stdin", "ZnJvbSBzdGRpbg==", "application/octet-stream"),
    ]
    for args, stdin, _, _ in cases:
        out = hubbub_cmd("pub", "cli.forms", *args, "--url", hub.url, input=stdin or None)
        assert out.returncode == 0, (args, out.stderr)
    got = [(m["data"], m.get("content_type")) for m in history(hub.url, "cli.forms")]
    assert got == [(data, ctype) for _, _, data, ctype in cases]


def test_pub_refused_exits_1(hub: HubProcess) -> None:
    """A message the hub refuses exits 1 with the hub's reason and the field at fault."""
    out = hubbub_cmd("pub", "bad topic!", "1", "--url", hub.url)
    assert out.returncode == 1
    assert "hubbub: error: " in out.stderr and "(topic)" in out.stderr
    out = hubbub_cmd("pub", "cli.bad", "nope", "--content-type", "application/json",
                     "--url", hub.url)
    assert out.returncode == 1 and "malformed JSON" in out.stderr


def test_pub_unreachable_exits_1() -> None:
    """With no hub to reach, ``pub`` retries until --timeout, then exits 1 saying so."""
    out = hubbub_cmd("pub", "cli.x", "1", "--url", f"http://127.0.0.1:{free_port()}",
                     "--timeout", "0.5")
    assert out.returncode == 1 and "cannot reach the hub" in out.stderr


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.smoke
def test_sub_reads_history_on_every_door(hub: HubProcess, transport: str) -> None:
    """``sub --after start --count N`` prints the first N messages as the hub stores them."""
    for topic, value in [("cli.a", 1), ("cli.b", "two"), ("cli.a", {"n": 3})]:
        publish(hub.url, topic, value)
    stored_a = history(hub.url, "cli.a")
    everything = sorted(stored_a + history(hub.url, "cli.b"),
                        key=lambda m: decode_cursor(m["cursor"]).seq)
    for topics, expected in [(["cli.a"], stored_a), (["cli.a", "cli.*"], everything)]:
        out = hubbub_cmd("sub", *topics, "--transport", transport, "--after", "start",
                         "--count", str(len(expected)), "--url", hub.url)
        assert out.returncode == 0, out.stderr
        assert json_lines(out.stdout) == expected


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sub_follows_new_messages(hub: HubProcess, transport: str) -> None:
    """``sub`` follows the topic live and exits after --count messages."""
    first = publish(hub.url, "cli.live", 0)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "sub", "cli.live", "--transport", transport,
         "--after", first["cursor"], "--count", "2", "--url", hub.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        for n in (1, 2):
            publish(hub.url, "cli.live", n)
        out, err = proc.communicate(timeout=20 * UNIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert [m["data"] for m in json_lines(out)] == [1, 2]


def test_longpoll_fits_the_hubs_max_wait(spawn_hub: Spawn, tmp_path: Path) -> None:
    """A long poll against a hub with a short max_wait shortens its wait instead of failing."""
    config = tmp_path / "hubbub.toml"
    config.write_text("[server]\nmax_wait = 4\n")
    hub = spawn_hub("memory://", "--config", str(config))
    publish(hub.url, "cli.wait", 1)
    out = hubbub_cmd("sub", "cli.wait", "--transport", "longpoll", "--after", "start",
                     "--count", "1", "--url", hub.url)
    assert out.returncode == 0, out.stderr
    assert [m["data"] for m in json_lines(out.stdout)] == [1]


def test_sub_interrupted_exits_130_quietly(hub: HubProcess) -> None:
    """Ctrl-C ends a following ``sub`` at once with status 130 and no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "hubbub", "sub", "cli.quiet", "--url", hub.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        publish(hub.url, "cli.quiet", "ready?")  # the topic exists; sub waits for news
        time.sleep(1 * UNIT)  # long enough to be connected and waiting
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10 * UNIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, out, err) == (130, "", "")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sub_prints_gaps(spawn_hub: Spawn, tmp_path: Path, transport: str) -> None:
    """History trimmed past the cursor comes out as a {"gap": ...} line before the messages."""
    config = tmp_path / "hubbub.toml"
    config.write_text("[namespaces.short]\nhistory_size = 2\n")
    hub = spawn_hub("memory://", "--config", str(config))
    receipts = [publish(hub.url, "short.t", n) for n in range(1, 6)]
    out = hubbub_cmd("sub", "short.t", "--transport", transport, "--after",
                     receipts[0]["cursor"], "--count", "2", "--url", hub.url)
    assert out.returncode == 0, out.stderr
    gap, *messages = json_lines(out.stdout)
    assert gap == {"gap": {"topic": "short.t", "from": 2, "to": 3, "reason": "trimmed"}}
    assert [m["data"] for m in messages] == [4, 5]


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_sub_refused_exits_1(hub: HubProcess, transport: str) -> None:
    """A cursor or topic the hub refuses ends ``sub`` with exit 1 and the reason."""
    out = hubbub_cmd("sub", "cli.a", "--transport", transport, "--after", "not-a-cursor",
                     "--url", hub.url)
    assert out.returncode == 1 and "cursor" in out.stderr
    out = hubbub_cmd("sub", "cli a", "--transport", transport, "--url", hub.url)
    assert out.returncode == 1 and "hubbub: error: " in out.stderr


# -- the client under the command line ---------------------------------------------------


class LoseFirstResponse(httpx.AsyncBaseTransport):
    """Forwards requests, but loses the response to the first one (it was handled)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.keys: list[str | None] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.keys.append(request.headers.get("idempotency-key"))
        response = await self.inner.handle_async_request(request)
        if len(self.keys) == 1:
            await response.aclose()
            raise httpx.ReadError("connection lost", request=request)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_publish_retries_with_the_same_key(hub: HubProcess) -> None:
    """A publish whose answer was lost is retried with the same key and stored once."""
    lossy = LoseFirstResponse()
    async with asyncio.timeout(10 * UNIT), AsyncClient(hub.url, http_transport=lossy) as client:
        receipt = await client.publish("cli.retry", {"once": True})
    assert len(lossy.keys) == 2 and lossy.keys[0] == lossy.keys[1] is not None
    assert receipt["duplicate"] is True and receipt["offset"] == 1
    assert [m["data"] for m in history(hub.url, "cli.retry")] == [{"once": True}]


async def test_publish_unreachable_raises_unavailable() -> None:
    """With no hub to reach, publish retries for ``retry_for`` seconds, then raises Unavailable."""
    async with asyncio.timeout(10 * UNIT), AsyncClient(
        f"http://127.0.0.1:{free_port()}", retry_for=0.3
    ) as client:
        with pytest.raises(Unavailable, match="cannot reach the hub"):
            await client.publish("cli.x", 1)


async def test_publish_refused_is_not_retried(hub: HubProcess) -> None:
    """A 4xx answer raises the matching hubbub.protocol.errors class, with no retry."""
    async with asyncio.timeout(10 * UNIT), AsyncClient(hub.url) as client:
        with pytest.raises(InvalidTopic) as info:
            await client.publish("bad topic", 1)
    assert info.value.field == "topic"
