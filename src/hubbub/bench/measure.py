"""The measuring instruments: servers under test as processes, the load
generator, wrk, the benchmark's own redis-server, and CPU and memory read
from ``/proc``.

Rule 1 of :mod:`hubbub.bench` lives here: the load generator prints marks
(``start``, ``end``, ``held``) and :func:`drive` samples ``/proc`` at each,
for the server, the generator and the whole machine. A server may be several
processes: hub nodes sharing one store, and the store's own process (Redis);
the CPU of all of them is the server's.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

Metrics = dict[str, float]

#: The checkout's load generator (``benchmarks/loadgen``), next to ``src/``.
LOADGEN = Path(__file__).resolve().parents[3] / "benchmarks" / "loadgen"
RUN_LIMIT = 180.0
START_LIMIT = 30.0
_TICK = os.sysconf("SC_CLK_TCK")
#: The topic (or room) every scenario uses (its namespace, ``bench``, is configurable).
TOPIC = "bench"


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
    count, its processes found once the node listens.
    """

    name: str
    argv: Callable[[int, Path], list[str]]
    doors: Mapping[str, str]
    dialect: str = "hubbub"
    python: bool = True
    nodes: int = 1
    store_pid: Callable[[], int] | None = None
    tree: bool = False


@dataclass(frozen=True, slots=True)
class Sample:
    """CPU seconds and resident memory of some processes at one instant.

    ``busy`` is the CPU time of the whole machine (every core, every process,
    the kernel's own work included), so that what other processes took
    during a measurement is seen and reported. ``pss_kb`` is each process's
    proportional share of memory (its pages shared with others divided
    among them, so the processes of one server add up without counting
    shared pages twice); ``socket_kb`` is the kernel's memory for TCP
    sockets, the whole machine's (:func:`_socket_kb`).
    """

    at: float
    cpu: Mapping[int, float]
    rss_kb: Mapping[int, int]
    busy: float
    pss_kb: Mapping[int, int] = field(default_factory=dict)
    socket_kb: int = 0


def _machine_busy() -> float:
    # /proc/stat "cpu" line: user nice system idle iowait irq softirq steal ...
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICK


def _kb(text: str, key: str) -> int:
    """The ``key:  N kB`` line of a ``/proc`` file, in kB (0 when absent)."""
    return next((int(line.split()[1]) for line in text.splitlines() if line.startswith(key)), 0)


#: The kernel's objects of a TCP socket (/proc/slabinfo, readable by root only).
SOCKET_SLABS = ("TCP", "sock_inode_cache")


def _socket_kb() -> int:
    """The kernel's memory for TCP sockets: their buffers (``/proc/net/sockstat``),
    plus, where readable, the socket objects themselves (SOCKET_SLABS)."""
    kb = 0
    # /proc/net/sockstat: "TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 1" (mem in pages)
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            words = line.split()
            kb += int(words[words.index("mem") + 1]) * _PAGE_KB
    # /proc/slabinfo: "name active_objs num_objs objsize objperslab pagesperslab : ..."
    with contextlib.suppress(OSError):
        for line in Path("/proc/slabinfo").read_text().splitlines():
            words = line.split()
            if words and words[0] in SOCKET_SLABS:
                kb += int(words[2]) * int(words[3]) // 1024
    return kb


_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


def sample(pids: Sequence[int]) -> Sample:
    """Read ``/proc`` for ``pids`` (a process that is gone reads as zero)."""
    at, cpu, rss, pss, busy = time.monotonic(), {}, {}, {}, _machine_busy()
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            cpu[pid], rss[pid], pss[pid] = 0.0, 0, 0
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
        cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICK  # utime + stime
        rss[pid] = _kb(status, "VmRSS:")
        pss[pid] = _kb(rollup, "Pss:")
    return Sample(at, cpu, rss, busy, pss, _socket_kb())


def descendants(pids: Sequence[int]) -> list[int]:
    """Every process below ``pids`` (children, their children, ...)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            parent[int(stat.parent.name)] = int(text[text.rindex(")") + 2:].split()[1])
    found: list[int] = []
    frontier = set(pids)
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier}
        found += sorted(frontier)
    return found


def cpu_share(first: Sample, last: Sample, pid: int) -> float:
    """Cores ``pid`` used on average between two samples (1.0 = one core)."""
    return (last.cpu[pid] - first.cpu[pid]) / max(1e-9, last.at - first.at)


def cpu_shares(first: Sample, last: Sample, server: Sequence[int], loadgen: float,
               store: int | None = None) -> Metrics:
    """The server's (every process of it), the load generator's (``loadgen``
    cores) and everything else's CPU; the ``store`` process's alone besides."""
    ours = sum(cpu_share(first, last, pid) for pid in server)
    machine = (last.busy - first.busy) / max(1e-9, last.at - first.at)
    shares = {"server_cpu": ours, "loadgen_cpu": loadgen,
              "other_cpu": max(0.0, machine - ours - loadgen)}
    if store is not None:
        shares["store_cpu"] = cpu_share(first, last, store)
    return shares


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

    def url(self, door: str, scheme: str = "http", topic: str = TOPIC, node: int = 0) -> str:
        port = self.port if node == 0 else self.more[node - 1][1]
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


def _generator(spec: Mapping[str, Any]) -> list[str]:
    """The command that runs ``spec``: Node's ``main.mjs``, or one of the C
    clients (built on first use): ``loadgen/longpoll.c`` for the ``longpoll``
    mode, ``loadgen/fanout.c`` for fan-out over WebSockets."""
    if spec["mode"] == "longpoll":
        return [str(c_client("longpoll")), spec["poll_url"], spec["publish_url"], str(spec["n"]),
                str(spec["size"]), str(spec["settle"]), str(spec["timeout_ms"])]
    if spec["mode"] == "fanout" and "sse_url" not in spec:
        subs = ",".join(spec["sub_urls"]) if spec.get("sub_urls") else "-"
        rates = ",".join(f"{r:g}" for r in spec.get("latency_rates", (0,)))
        return [str(c_client("fanout")), spec["dialect"], spec["url"], subs, spec["topic"],
                *(str(spec[k]) for k in ("n", "size", "window", "warmup", "seconds",
                                         "latency_seconds")),
                rates, str(RUN_LIMIT - 10)]
    node = shutil.which("node")
    if node is None:
        raise BenchError("node is not installed (the load generator needs Node.js 18 or later)")
    return [node, str(LOADGEN / "main.mjs"), json.dumps({"timeout_s": RUN_LIMIT - 10, **spec})]


#: The load generator's clients written in C, for the scenarios whose rates a
#: Node client could not keep up with (see each file's header).
C_CLIENTS = ("longpoll", "fanout")


def c_client(name: str) -> Path:
    """The C client ``name``, compiled from ``loadgen/NAME.c`` with the
    system's C compiler into ``loadgen/build/`` when missing or older than
    its source (or ``loadgen/common.h``)."""
    source = LOADGEN / f"{name}.c"
    binary = LOADGEN / "build" / name
    newest = max(source.stat().st_mtime, (LOADGEN / "common.h").stat().st_mtime)
    if binary.is_file() and binary.stat().st_mtime >= newest:
        return binary
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc is None:
        raise BenchError(f"the {name} client needs a C compiler (cc; set CC to another)")
    binary.parent.mkdir(exist_ok=True)
    built = subprocess.run([cc, "-O2", "-o", str(binary), str(source), "-lm"],
                           capture_output=True, text=True)
    if built.returncode != 0:
        raise BenchError(f"could not build the {name} client: {built.stderr[-500:]}")
    return binary


async def drive(spec: Mapping[str, Any], served: Served) -> tuple[Metrics, dict[str, Sample]]:
    """Run the load generator with ``spec``; its result and a sample at each of its marks."""
    proc = await asyncio.create_subprocess_exec(
        *_generator(spec), stdout=subprocess.PIPE, stderr=subprocess.PIPE, limit=1 << 20)
    assert proc.stdout is not None and proc.stderr is not None
    marks: dict[str, Sample] = {}
    outcome: dict[str, Any] = {}
    try:
        async with asyncio.timeout(RUN_LIMIT):
            async for line in proc.stdout:
                event = json.loads(line)
                if "mark" in event:
                    at = sample([*served.pids, proc.pid])
                    if "cpu_s" in event:  # its own word: it may be gone from /proc by now
                        at = replace(at, cpu={**at.cpu, proc.pid: float(event["cpu_s"])})
                    marks[event["mark"]] = at
                else:
                    outcome = event
            stderr = (await proc.stderr.read()).decode(errors="replace")
            await proc.wait()
    except TimeoutError:
        raise BenchError(f"the load generator ran past {RUN_LIMIT:g} s") from None
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    if "result" not in outcome:
        raise BenchError(outcome.get("error") or f"the load generator failed: {stderr[-500:]}")
    result: Metrics = outcome["result"]
    if "start" in marks and "end" in marks:
        first, last = marks["start"], marks["end"]
        result |= cpu_shares(first, last, served.pids, cpu_share(first, last, proc.pid),
                             served.store_pid)
    # Fan-out's paced phases ("half", "at500", ...), in percent.
    for name, first in marks.items():
        end = marks.get(f"{name}-end")
        if end is None:
            continue
        paced = cpu_shares(first, end, served.pids, cpu_share(first, end, proc.pid))
        prefix = "half_rate_" if name == "half" else f"{name}_"
        result[f"{prefix}server_cpu"] = 100 * paced["server_cpu"]
        result[f"{prefix}loadgen_cpu"] = 100 * paced["loadgen_cpu"]
    return per_core_second(result), marks


#: Rates that are also given per server core-second (``<key>`` -> ``<key>_per_core_s``
#: with the ``_per_s`` dropped): what a server does with the CPU it takes.
PER_CORE = ("deliveries_per_s", "requests_per_s")


def per_core_second(result: Metrics) -> Metrics:
    """Add each rate of :data:`PER_CORE` per server core-second (the server's
    CPU over the same window, every process of it, the store's included)."""
    cores = result.get("server_cpu")
    if cores:
        for key in PER_CORE:
            if key in result:
                result[key.removesuffix("_per_s") + "_per_core_s"] = result[key] / cores
    return result


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


# -- wrk ------------------------------------------------------------------------------
_WRK_RATE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
_WRK_P99 = re.compile(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_WRK_ERRORS = re.compile(
    r"Non-2xx or 3xx responses: (\d+)"
    r"|Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_wrk(output: str) -> Metrics:
    """Requests per second, p99 (ms) and errors from the output of ``wrk --latency``."""
    rate, p99 = _WRK_RATE.search(output), _WRK_P99.search(output)
    if rate is None or p99 is None:
        raise BenchError(f"unexpected wrk output: {output[-300:]}")
    errors = sum(int(n) for m in _WRK_ERRORS.finditer(output) for n in m.groups() if n)
    return {"requests_per_s": float(rate.group(1)),
            "p99_ms": float(p99.group(1)) * _TO_MS[p99.group(2)], "errors": errors}


def run_measured(argv: list[str], limit: float) -> tuple[str, float]:
    """Run ``argv`` to its end (killed past ``limit`` s): its output and CPU seconds."""
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:
        timer = threading.Timer(limit, proc.kill)
        timer.start()
        assert proc.stdout is not None
        output = proc.stdout.read().decode(errors="replace")
        _, status, usage = os.wait4(proc.pid, 0)
        timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise BenchError(f"{argv[0]} exited with {proc.returncode}: {output[-300:]}")
    return output, usage.ru_utime + usage.ru_stime


def raise_file_limit(needed: int) -> None:
    """Raise the open-file limit to its hard maximum (children inherit it), and
    the hard maximum itself to ``needed`` where allowed (as root, up to the
    kernel's ``fs.nr_open``)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            soft, hard = needed, needed
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        print(f"hubbub bench: warning: the open-file limit is {hard}, below the {needed} "
              "some scenarios need", file=sys.stderr)


def ensure_loadgen() -> None:
    """Check that the load generator can run: it needs a checkout and Node.js,
    and nothing from npm (its WebSocket and HTTP clients are its own), and a C
    compiler for its C clients."""
    if not (LOADGEN / "main.mjs").is_file() or shutil.which("node") is None:
        raise BenchError(f"the load generator needs {LOADGEN} (a hubbub checkout) and Node.js")
    for name in C_CLIENTS:
        c_client(name)
