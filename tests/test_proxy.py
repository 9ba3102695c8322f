"""The nginx configuration of docs/cluster.md, as written there, in front of
``hubbub serve``: a long poll held for the longest wait, an upload with the
client's default chunks, SSE and the WebSocket all pass through it.

nginx is Debian's (``make test`` installs nginx-light when it is missing);
without it these tests are skipped, saying so. The block is read from the
document itself, so the document cannot drift from what is tested: only
the addresses are changed (the upstream becomes one hub on a free port, the
``listen`` a free loopback port). The long poll for the longest wait runs
against a copy of the block whose timeouts are divided by :data:`SCALE`,
with a wait divided by it too: the same race between the hub's wait and
nginx's read timeout, in a tenth of the time.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import msgspec
import pytest
from websockets.sync.client import connect

from hubbub.config import ServerConfig
from tests.conftest import UNIT, HubProcess, free_port

DOC = Path(__file__).resolve().parent.parent / "docs" / "cluster.md"
NGINX = shutil.which("nginx") or next(
    (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None)
MIB = 1 << 20
#: The long-poll tests divide the block's timeouts, and the wait, by this.
SCALE = 10

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed "
                                "(make test installs Debian's nginx-light)")


def documented_block() -> str:
    """The ```nginx block of docs/cluster.md."""
    found = re.search(r"```nginx\n(.*?)```", DOC.read_text(), re.S)
    assert found is not None, "docs/cluster.md has no nginx block"
    return found.group(1)


def block_for(hub_port: int, port: int) -> str:
    """The documented block with the test's addresses."""
    block = documented_block()
    servers = re.findall(r"^\s*server 127\.0\.0\.1:\d+.*;$", block, re.M)
    assert servers, "the block's upstream names no server"
    block = block.replace(servers[0], f"    server 127.0.0.1:{hub_port};")
    for line in servers[1:]:
        block = block.replace(line + "\n", "")
    listen = re.search(r"^\s*listen 80;$", block, re.M)
    assert listen is not None
    return block.replace(listen.group(0), f"    listen 127.0.0.1:{port};")


def scaled(block: str) -> str:
    """``block`` with each ``proxy_*_timeout`` divided by :data:`SCALE`."""
    return re.sub(r"(proxy_\w+_timeout) (\d+)s;",
                  lambda m: f"{m.group(1)} {int(m.group(2)) * 1000 // SCALE}ms;", block)


@dataclass
class Proxy:
    url: str
    hub: HubProcess

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/v1/ws"


def start_nginx(dir: Path, hub_port: int, scale: bool = False
                ) -> tuple[subprocess.Popen[bytes], int]:
    assert NGINX is not None
    port = free_port()
    block = block_for(hub_port, port)
    for sub in ("body", "proxy"):
        (dir / sub).mkdir()
    # Run by root (the test machines), nginx's workers would be "nobody", who
    # cannot write the temporary directories made here.
    user = "user root;\n" if os.geteuid() == 0 else ""
    (dir / "nginx.conf").write_text(
        f"daemon off;\nworker_processes 1;\npid {dir}/nginx.pid;\n{user}"
        "events { worker_connections 256; }\n"
        f"http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n"
        f"  proxy_temp_path {dir}/proxy;\n{scaled(block) if scale else block}\n}}\n")
    log = dir / "error.log"
    proc = subprocess.Popen([NGINX, "-p", str(dir), "-c", str(dir / "nginx.conf"),
                             "-e", str(log)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15 * UNIT
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited: {log.read_text() if log.exists() else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait(10)
            raise TimeoutError("nginx did not answer")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """The hub behind the proxies (both proxies of a module front the same one)."""
    dir = tmp_path_factory.mktemp("hub")
    hub = HubProcess(f"sqlite:///{dir / 'hub.db'}", free_port()).start()
    try:
        yield hub
    finally:
        if hub.proc is not None and hub.proc.poll() is None:
            hub.terminate()
        if hub.proc is not None and hub.proc.stdout is not None:
            hub.proc.stdout.close()


def run_proxy(dir: Path, hub: HubProcess, scale: bool = False) -> Iterator[Proxy]:
    """nginx in front of ``hub`` (with the timeouts :func:`scaled`, if ``scale``)."""
    nginx, port = start_nginx(dir, hub.port, scale)
    try:
        yield Proxy(f"http://127.0.0.1:{port}", hub)
    finally:
        nginx.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
        try:
            nginx.wait(10 * UNIT)
        except subprocess.TimeoutExpired:
            nginx.kill()
            nginx.wait(10)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, hub: HubProcess) -> Iterator[Proxy]:
    yield from run_proxy(tmp_path_factory.mktemp("proxy"), hub)


@pytest.fixture(scope="module")
def scaled_proxy(tmp_path_factory: pytest.TempPathFactory, hub: HubProcess
                 ) -> Iterator[Proxy]:
    yield from run_proxy(tmp_path_factory.mktemp("proxy"), hub, scale=True)


def publish(url: str, topic: str, value: object) -> dict[str, object]:
    r = httpx.post(f"{url}/v1/topics/{topic}", json=value, timeout=10 * UNIT)
    assert r.status_code == 201, r.text
    receipt: dict[str, object] = r.json()
    return receipt


def test_the_block_outlasts_the_hubs_waits() -> None:
    """The documented timeouts are longer than the longest long poll and the SSE
    heartbeat, and the body limit is larger than an upload chunk."""
    block = documented_block()
    read = re.search(r"proxy_read_timeout (\d+)s;", block)
    body = re.search(r"client_max_body_size (\d+)m;", block)
    assert read is not None and body is not None
    defaults = ServerConfig()
    assert int(read.group(1)) > max(defaults.max_wait, defaults.heartbeat)
    assert int(body.group(1)) * MIB > 8 * MIB  # hubbub upload --chunk-size's default


def long_poll(proxy: Proxy, wait: float) -> httpx.Response:
    return httpx.get(f"{proxy.url}/v1/topics/proxy.idle/messages",
                     params={"after": "end", "wait": wait}, timeout=wait + 30 * UNIT)


def test_a_long_poll_for_the_longest_wait(scaled_proxy: Proxy) -> None:
    """A long poll with ``wait`` at the hub's maximum (60 s) is held to its end and
    answered 200, empty, with its cursor: not cut off by the proxy (504). Both
    the wait and the block's timeouts are divided by SCALE."""
    r = long_poll(scaled_proxy, ServerConfig().max_wait / SCALE)
    assert r.status_code == 200, r.text
    assert r.json()["messages"] == [] and r.json()["cursor"]


def test_the_scaled_read_timeout_is_the_one_that_applies(scaled_proxy: Proxy) -> None:
    """A wait past the scaled ``proxy_read_timeout`` is cut off by nginx (504): the
    scaled block's timeout is in force, so the test above measured against it."""
    read = re.search(r"proxy_read_timeout (\d+)ms;", scaled(documented_block()))
    assert read is not None
    r = long_poll(scaled_proxy, int(read.group(1)) / 1000 + 2)
    assert r.status_code == 504, r.text


async def test_a_long_poll_is_answered_by_a_publish(proxy: Proxy) -> None:
    """A long poll held through the proxy is answered by the next publish."""
    first = publish(proxy.url, "proxy.lp", 0)
    async with asyncio.timeout(30 * UNIT), httpx.AsyncClient(timeout=30 * UNIT) as http:
        poll = asyncio.create_task(http.get(
            f"{proxy.url}/v1/topics/proxy.lp/messages",
            params={"after": str(first["cursor"]), "wait": 20}))
        while waiting_polls(await http.get(f"{proxy.hub.url}/metrics")) < 1:
            await asyncio.sleep(0.02)  # until the hub holds the poll
        await http.post(f"{proxy.url}/v1/topics/proxy.lp", json=1)
        answer = await poll
    assert [m["data"] for m in answer.json()["messages"]] == [1]


def waiting_polls(metrics: httpx.Response) -> float:
    found = re.search(r'^hubbub_connections\{door="longpoll"\} (\S+)$', metrics.text, re.M)
    return float(found.group(1)) if found else 0.0


def test_an_upload_with_default_chunks(proxy: Proxy, tmp_path: Path) -> None:
    """``hubbub upload`` with its default 8 MiB chunks passes the body limit."""
    source = tmp_path / "video.mp4"
    data = os.urandom(9 * MIB)
    source.write_bytes(data)
    out = subprocess.run(
        [sys.executable, "-m", "hubbub", "upload", str(source), "--url", proxy.url,
         "--state", str(tmp_path / "state.json")],
        capture_output=True, text=True, timeout=60 * UNIT)
    assert out.returncode == 0, out.stderr
    result = msgspec.json.decode(out.stdout)
    assert result["size"] == len(data)
    got = httpx.get(f"{proxy.hub.url}/v1/uploads/{result['id']}", timeout=30 * UNIT)
    assert got.content == data


def test_sse_events_pass_unbuffered(proxy: Proxy) -> None:
    """An SSE event published after the stream opened arrives at once (a buffering
    proxy would hold it until its buffer fills)."""
    first = publish(proxy.url, "proxy.sse", 0)
    with httpx.Client(timeout=30 * UNIT) as http, http.stream(
            "GET", f"{proxy.url}/v1/topics/proxy.sse/events",
            params={"after": first["cursor"]}) as stream:
        assert stream.status_code == 200
        publish(proxy.url, "proxy.sse", {"n": 1})
        event = ""
        for line in stream.iter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "message":
                assert msgspec.json.decode(line[5:])["data"] == {"n": 1}
                break


def test_websocket_passes(proxy: Proxy) -> None:
    """The WebSocket upgrade passes: subscribe, and a publish arrives as a frame."""
    with connect(proxy.ws_url, subprotocols=["hubbub.v1.json"],  # type: ignore[list-item]
                 open_timeout=10 * UNIT) as ws:
        ws.send(msgspec.json.encode({"op": "sub", "id": 1, "topics": ["proxy.ws"]}).decode())
        assert msgspec.json.decode(ws.recv(timeout=10 * UNIT))["op"] == "ok"
        publish(proxy.url, "proxy.ws", "hi")
        frame = msgspec.json.decode(ws.recv(timeout=10 * UNIT))
    assert (frame["op"], frame["data"]) == ("msg", "hi")
