"""The servers under test as processes: started on free loopback ports, waited
for, profiled, stopped; and the benchmark's own redis-server."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .certs import files_in, self_signed
from .procfs import descendants

#: The checkout's load generator (``benchmarks/loadgen``), next to ``src/``.
LOADGEN = Path(__file__).resolve().parents[3] / "benchmarks" / "loadgen"
START_LIMIT = 30.0
#: The topic (or room) every scenario uses (its namespace, ``bench``, is configurable).
TOPIC = "bench"
#: Where the certificate of a TLS server is, under its scratch directory.
CERT_DIR = "tls"
TLS_SCHEMES = {"http": "https", "ws": "wss"}


class BenchError(Exception):
    """A run could not be carried out or gave an invalid result; the message says why."""


@dataclass(frozen=True, slots=True)
class Server:
    """A server under test: how to start it and where its doors are.

    ``argv(port, scratch)`` is its command line (``scratch`` is an empty
    directory of its own); ``doors`` maps a door (``ws``, ``sse``,
    ``publish``, ``poll``, ``batch``) to its path, where ``{topic}`` stands
    for the topic (``ready``: a path that answers 200 once the server is
    all up, when listening is not enough); ``dialect`` is how the load generator speaks WebSocket to
    it (``hubbub`` or ``socketio``).

    ``nodes`` processes are started from ``argv``, each on a port of its own
    and all with the same ``scratch`` (so they name the same store); node 0
    is the one publishers use. ``store_pid()`` names a store process beside
    them (the benchmark's redis-server), whose CPU counts as the server's.
    With ``tree``, each node is a process tree (nginx's master and workers,
    Pushpin's runner and services): the CPU and memory of the whole tree
    count, its processes found once the node listens. With ``tls``, a
    throwaway certificate (:func:`.certs.self_signed`) is written into
    ``scratch / CERT_DIR`` before the nodes start, and the server's URLs are
    ``https`` and ``wss``.
    """

    name: str
    argv: Callable[[int, Path], list[str]]
    doors: Mapping[str, str]
    dialect: str = "hubbub"
    python: bool = True
    nodes: int = 1
    store_pid: Callable[[], int] | None = None
    tree: bool = False
    tls: bool = False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(slots=True)
class Served:
    """A running server under test: node 0, the other nodes, the store process."""

    server: Server
    proc: asyncio.subprocess.Process
    port: int
    scratch: Path
    #: The other nodes (``Server.nodes`` > 1): process and port of each.
    more: list[tuple[asyncio.subprocess.Process, int]] = field(default_factory=list)
    store_pid: int | None = None
    #: The processes below the nodes (``Server.tree``).
    children: list[int] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """Every process of the server: its nodes and theirs, then its store process."""
        nodes = [self.proc.pid, *(proc.pid for proc, _ in self.more), *self.children]
        return nodes + ([self.store_pid] if self.store_pid is not None else [])

    @property
    def cafile(self) -> Path | None:
        """The certificate a client trusts to reach a TLS server (None: plaintext)."""
        return files_in(self.scratch / CERT_DIR).cert if self.server.tls else None

    def url(self, door: str, scheme: str = "http", topic: str = TOPIC, node: int = 0) -> str:
        """The URL of ``door`` on ``node``; ``scheme`` is the plaintext one (``http``,
        ``ws``), made ``https``, ``wss`` for a TLS server."""
        port = self.port if node == 0 else self.more[node - 1][1]
        if self.server.tls:
            scheme = TLS_SCHEMES.get(scheme, scheme)
        return f"{scheme}://127.0.0.1:{port}{self.server.doors[door].format(topic=topic)}"

    def urls(self, door: str, scheme: str = "http", topic: str = TOPIC) -> list[str]:
        """The door on every node, node 0 first."""
        return [self.url(door, scheme, topic, k) for k in range(1 + len(self.more))]


@contextlib.asynccontextmanager
async def serving(server: Server, profile: Path | None = None) -> AsyncIterator[Served]:
    """Start ``server`` (every node), wait until each accepts connections, and
    stop them at the end."""
    with tempfile.TemporaryDirectory(prefix="hubbub-bench-") as tmp:
        scratch = Path(tmp)
        procs: list[tuple[asyncio.subprocess.Process, int]] = []
        logs: list[BinaryIO] = []
        spy: subprocess.Popen[bytes] | None = None
        children: list[int] = []
        if server.tls:
            self_signed(scratch / CERT_DIR)
        try:
            for k in range(server.nodes):
                port, name = free_port(), "server.log" if k == 0 else f"server-{k}.log"
                logs.append((scratch / name).open("wb"))
                procs.append((await asyncio.create_subprocess_exec(
                    *server.argv(port, scratch), stdout=logs[-1], stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL), port))
            for (proc, port), log in zip(procs, logs, strict=True):
                await _until_listening(proc, port, scratch / Path(log.name).name)
                if "ready" in server.doors:
                    await _until_ready(port, server.doors["ready"])
            (proc, port), more = procs[0], procs[1:]
            if profile is not None and server.python:
                spy = _profiler(proc.pid, profile, server.name)
            store = server.store_pid() if server.store_pid is not None else None
            if server.tree:
                children = await _settled_tree([p.pid for p, _ in procs])
            yield Served(server, proc, port, scratch, more, store, children)
        finally:
            if spy is not None:
                spy.send_signal(signal.SIGINT)  # py-spy writes its profile and exits
                await asyncio.to_thread(spy.wait, 30)
            for proc, _ in procs:
                await _stop(proc, server.tree)
            for pid in children:  # what a tree's root left behind, if anything
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for log in logs:
                log.close()


async def _settled_tree(roots: Sequence[int]) -> list[int]:
    """The processes below ``roots`` once their number stops changing: a root
    may listen before it has started its workers (nginx's master does)."""
    found = descendants(roots)
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        again = descendants(roots)
        if again and again == found:
            return found
        found = again
    return found


async def _stop(proc: asyncio.subprocess.Process, tree: bool) -> None:
    """Kill ``proc``; the root of a tree is asked first (SIGTERM), so that it
    stops the processes it started (nginx's workers, Pushpin's services)."""
    with contextlib.suppress(ProcessLookupError):
        if tree:
            proc.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)
        proc.kill()
    await proc.wait()


async def _until_listening(proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            tail = await asyncio.to_thread(log.read_text, errors="replace")
            raise BenchError(f"the server exited: {tail[-500:]}")
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            await writer.wait_closed()
            return
        await asyncio.sleep(0.05)
    raise BenchError(f"the server did not listen within {START_LIMIT:g} s")


async def _until_ready(port: int, path: str) -> None:
    """Wait until ``GET path`` answers 200: a server whose port opens before
    all of it is up (Pushpin: its proxy, its HTTP client, the origin)."""
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                         .encode())
            status = await reader.readline()
            writer.close()
            await writer.wait_closed()
            if status.startswith(b"HTTP/1.1 200"):
                return
        await asyncio.sleep(0.1)
    raise BenchError(f"{path} did not answer 200 within {START_LIMIT:g} s")


def _profiler(pid: int, directory: Path, name: str) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` (server ``name``) into a speedscope file under ``directory``."""
    # On PATH, next to this interpreter, or in the suite's venv (benchmarks/run installs it).
    candidates = [Path(sys.executable).parent / "py-spy", LOADGEN.parent / ".venv/bin/py-spy"]
    spy = shutil.which("py-spy") or next((str(c) for c in candidates if c.exists()), None)
    if spy is None:
        raise BenchError("--profile needs py-spy (benchmarks/run installs it)")
    directory.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    out = directory / f"{time.strftime('%H%M%S')}-{slug}-{pid}.speedscope.json"
    return subprocess.Popen([spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
                             "--format", "speedscope", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- the store of the redis runs ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisServer:
    """The benchmark's own ``redis-server``: its URL and process id."""

    url: str
    pid: int


_redis: RedisServer | None = None
#: Durability as the SQLite engine's default (``synchronous=NORMAL``): every
#: answered write is in the OS's hands (an AOF ``write()`` before Redis
#: replies), so it survives a crash of the process but not of the machine.
#: No snapshots and no AOF rewrites: no fork in the middle of a measurement.
REDIS_ARGS = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
              "--auto-aof-rewrite-percentage", "0", "--maxmemory-policy", "noeviction")


def redis_server() -> RedisServer:
    """A ``redis-server`` on a free loopback port, started on first use, with
    its files in a temporary directory (both gone at exit). Runs share it:
    each run names a key prefix of its own, so none sees another's data."""
    global _redis
    if _redis is not None:
        return _redis
    exe = shutil.which("redis-server")
    if exe is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    tmp, port = tempfile.mkdtemp(prefix="hubbub-bench-redis-"), free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp,
                             "--logfile", "redis.log", *REDIS_ARGS],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)

    def stop() -> None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(stop)
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"redis-server exited; see {tmp}/redis.log")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(64).startswith(b"+PONG"):
                _redis = RedisServer(f"redis://127.0.0.1:{port}/0", proc.pid)
                return _redis
        time.sleep(0.05)
    raise BenchError(f"redis-server did not answer within {START_LIMIT:g} s")
