"""The scenarios: what each one runs against which servers, and what it reports.

A scenario's ``measure`` carries out one run against a started server and
returns its figures; ``prepare`` (:mod:`hubbub.bench`, trade-off "load the store
once") loads the server once before its runs. Peers are added by ``benchmarks/suite.py``.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import tls
from .measure import RUN_LIMIT, drive, parse_wrk, per_core_second, run_measured
from .plan import (
    DELIVERIES,
    FULL,
    P50,
    P99,
    PER_CORE,
    Metric,
    Run,
    Scenario,
    Size,
    check,
    hub,
)
from .procfs import Metrics, cpu_shares, sample
from .servers import LOADGEN, TOPIC, BenchError, Served, Server

# out: a quarter of the hub's default subscriber buffer, the same for every
# server, enough for each to reach its plateau (measured: 64 is not).
FANOUT_WINDOW = 256
FANOUT_CHECKS = ("closed", "publish_errors", "mismatches", "undelivered", "lost", "duplicates",
                 "reordered")


def _fanout_spec(run: Run, n: int) -> dict[str, Any]:
    s = run.size
    return {"mode": "fanout", "n": n, "size": 256, "window": FANOUT_WINDOW, "warmup": s.warmup,
            "seconds": s.seconds, "latency_seconds": s.latency_seconds,
            "paced_min": s.paced_min, "latency_rates": (0, *run.params.get("fixed_rates", ()))}


async def _ws_fanout(run: Run) -> Metrics:
    """The publisher on node 0; the subscribers spread over the nodes, on
    the server's subscriber door when it has one of its own (``ws_sub``)."""
    served = run.served
    spec = _fanout_spec(run, run.params["n"])
    spec |= {"dialect": served.server.dialect, "url": served.url("ws", "ws"),
             "sub_urls": served.urls(_sub_door(served), "ws"), "topic": TOPIC}
    result, _ = await drive(spec, served)
    check(result, *FANOUT_CHECKS)
    return result


def _sub_door(served: Served) -> str:
    """Where WebSocket subscribers connect: ``ws_sub`` when the server has it
    (nchan, Pushpin: the channel in the URL), else ``ws``."""
    return "ws_sub" if "ws_sub" in served.server.doors else "ws"


def _fanout_variants(size: Size) -> list[tuple[str, dict[str, Any]]]:
    """N = each of ``size.fanout_n``; the largest also paced at the fixed rates."""
    top = max(size.fanout_n)
    return [(f"N={n}", {"n": n, "fixed_rates": size.fixed_rates if n == top else ()})
            for n in size.fanout_n]


async def _sse_fanout(run: Run) -> Metrics:
    """SSE subscribers; the publisher POSTs over a pool of keep-alive
    connections, between which there is no order: messages a subscriber gets
    out of seq order are counted (``reordered``), not refused."""
    served = run.served
    spec = _fanout_spec(run, run.size.sse_n)
    spec |= {"sse_url": served.url("sse"), "publish_url": served.url("publish")}
    result, _ = await drive(spec, served)
    check(result, *(k for k in FANOUT_CHECKS if k != "reordered"))
    return result


async def _long_poll(run: Run) -> Metrics:
    served = run.served
    result, _ = await drive({
        "mode": "longpoll", "n": run.size.polls, "size": 100, "settle": run.size.settle,
        "poll_url": served.url("poll") + "?after=end&wait=30", "publish_url": served.url("publish"),
        "timeout_ms": 30_000,
    }, served)
    check(result, "early", "failed", "waiting")
    return result


def _check_room(n: int) -> None:
    """Refuse ``n`` connections this machine cannot hold, saying why."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 1024:
        # The server and the generator each hold n sockets, in one process each.
        raise BenchError(f"{n:,} connections need an open-file limit above {n + 1024:,}; "
                         f"the hard limit here is {hard:,} and could not be raised "
                         "(it takes root with CAP_SYS_RESOURCE, or a higher limit given "
                         "to the session)")
    # Both ends of every connection are files of this machine.
    file_max = int(Path("/proc/sys/fs/file-max").read_text())
    if file_max < 2 * n + 10_000:
        raise BenchError(f"{n:,} connections need fs.file-max above {2 * n + 10_000:,} "
                         f"(it is {file_max:,}: sysctl -w fs.file-max=...)")


async def _idle_ws(run: Run) -> Metrics:
    """``n`` idle WebSockets, each subscribed to a topic of its own: the
    growth of the server's memory (every process of it, proportional shares)
    and of the kernel's TCP socket memory (both ends, as both are on this
    machine) per connection; then, where the server publishes to a topic
    named in the URL, one message to each topic and the time each takes
    to reach its subscriber."""
    served, n = run.served, run.params.get("n", run.size.idle)
    _check_room(n)
    pids = served.pids
    base = sample(pids)
    spec = {"mode": "idle", "dialect": served.server.dialect,
            "url": served.url(_sub_door(served), "ws", topic="{topic}"),
            "topic": f"{TOPIC}.idle.", "n": n,
            "settle": run.size.settle, "hold": 1.0, "wake_timeout_s": 60}
    if "{topic}" in served.server.doors.get("publish", ""):
        spec["publish_url"] = served.url("publish", topic="{topic}")
    result, marks = await drive(spec, served)
    check(result, "closed", "not_woken")
    held = marks["end"]
    memory = sum(held.pss_kb[pid] for pid in pids)
    return {"kb_per_conn": (memory - sum(base.pss_kb[pid] for pid in pids)) / n,
            "socket_kb_per_conn": (held.socket_kb - base.socket_kb) / n,
            "pss_mb": memory / 1024,
            **{k: v for k, v in result.items() if k.startswith("wake_") or k in (
                "connections", "woken", "publish_s")}}


async def _preload(run: Run) -> None:
    served = run.served
    result, _ = await drive({
        "mode": "preload", "batch_url": served.url("batch"), "topic": TOPIC,
        "count": run.size.history, "size": 256, "batch": 1000, "concurrency": 2,
    }, served)
    if result["messages"] != run.size.history:
        raise BenchError(f"stored {result['messages']:g} of {run.size.history} messages")


async def _history(run: Run) -> Metrics:
    served, count = run.served, run.size.history
    ws, _ = await drive({"mode": "replay-ws", "url": served.url("ws", "ws"), "topic": TOPIC,
                         "count": count}, served)
    poll, _ = await drive({"mode": "replay-poll", "poll_url": served.url("poll"), "count": count,
                           "limit": 1000, "wait": 1}, served)
    cpu = {k: ws[k] for k in ("server_cpu", "loadgen_cpu", "other_cpu")}
    return {"ws_msgs_per_s": ws["messages_per_s"], "poll_msgs_per_s": poll["messages_per_s"],
            **cpu}


def _one(size: Size) -> list[tuple[str, dict[str, Any]]]:
    return [("", {})]


def _engines(config: str = "") -> Callable[[], list[Server]]:
    return lambda: [hub("memory", config), hub("sqlite", config)]


WRK_CONNECTIONS = 64


async def _wrk(served: Served, url: str, size: Size) -> Metrics:
    """Publishes with wrk on ``url``: a warm-up, then the measured requests/s and p99."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed (apt-get install wrk)")
    argv = [wrk, "-t1", f"-c{WRK_CONNECTIONS}", "--latency", "--timeout", "10s",
            "-s", str(LOADGEN / "publish.lua"), url]
    await asyncio.to_thread(run_measured, [*argv, f"-d{max(1, round(size.warmup))}s"],
                            RUN_LIMIT)
    first = sample(served.pids)
    output, cpu = await asyncio.to_thread(
        run_measured, [*argv, f"-d{max(1, round(size.seconds))}s"], RUN_LIMIT)
    last = sample(served.pids)
    result = parse_wrk(output)
    check(result, "errors")
    return per_core_second(result | cpu_shares(first, last, served.pids,
                                               cpu / (last.at - first.at), served.store_pid))


async def _wrk_publish(run: Run) -> Metrics:
    return await _wrk(run.served, run.served.url("publish"), run.size)


# -- the engines side by side, and a cluster ----------------------------------------------


async def _cluster(run: Run) -> Metrics:
    """Publish throughput (wrk, on node 0), then WebSocket fan-out on the same
    fresh server: ``n`` subscribers spread evenly over the nodes, the
    publisher on node 0, so on several nodes most deliveries cross Redis."""
    served = run.served
    publish = await _wrk(served, served.url("publish", topic=f"{TOPIC}.publish"), run.size)
    spec = _fanout_spec(run, run.params["n"])
    spec |= {"dialect": "hubbub", "url": served.url("ws", "ws"),
             "sub_urls": served.urls("ws", "ws"), "topic": TOPIC, "latency_rates": (0,)}
    result, _ = await drive(spec, served)
    check(result, *FANOUT_CHECKS)
    return result | {"publish_per_s": publish["requests_per_s"],
                     "publish_p99_ms": publish["p99_ms"],
                     **{f"publish_{k}": v for k, v in publish.items() if k.endswith("_cpu")}}


# -- uploads ---------------------------------------------------------------------------

UPLOAD_CHUNK = 8 << 20
#: A process that only listens: the disk ceiling is a "server" so that its runs
#: interleave with the real servers' (:mod:`hubbub.bench`, trade-off "interleave
#: runs across servers"), and it has nothing to serve.
_LISTEN = ("import socket, sys, time; s = socket.socket(); "
           "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); time.sleep(3600)")
DISK = Server("disk write (dd)", lambda port, scratch: [sys.executable, "-c", _LISTEN, str(port)],
              {}, dialect="disk")
_sources: dict[int, Path] = {}


def _upload_source(mib: int) -> Path:
    """A file of ``mib`` MiB of random bytes, made once per process (removed at exit)."""
    if mib not in _sources:
        fd, name = tempfile.mkstemp(prefix="hubbub-bench-upload-")
        with os.fdopen(fd, "wb") as f:
            for _ in range(mib):
                f.write(os.urandom(1 << 20))
        atexit.register(os.unlink, name)
        _sources[mib] = Path(name)
    return _sources[mib]


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while block := fa.read(UPLOAD_CHUNK):
            if block != fb.read(len(block)):
                return False
    return True


def _dd(source: Path, scratch: Path) -> Metrics:
    """The disk's own write speed: ``dd`` of the same bytes in the same blocks,
    flushed to the disk before it ends (``conv=fdatasync``)."""
    dd = shutil.which("dd")
    if dd is None:
        raise BenchError("dd is not installed")
    start = time.monotonic()
    run_measured([dd, f"if={source}", f"of={scratch / 'dd.out'}", f"bs={UPLOAD_CHUNK}",
                  "conv=fdatasync", "status=none"], RUN_LIMIT)
    seconds = time.monotonic() - start
    return {"mb_per_s": source.stat().st_size / 1e6 / seconds, "seconds": seconds}


async def _upload(run: Run) -> Metrics:
    served = run.served
    source = await asyncio.to_thread(_upload_source, run.size.upload_mib)
    if served.server.dialect == "disk":
        return await asyncio.to_thread(_dd, source, served.scratch)
    result, _ = await drive({"mode": "upload", "endpoint": served.url("upload"),
                             "file": str(source), "chunk": UPLOAD_CHUNK}, served)
    if result.get("offset") != run.size.upload_mib << 20:
        raise BenchError(f"the upload ended at offset {result.get('offset')}")
    stored = served.scratch / served.server.doors["upload_files"] / str(result.pop("id"))
    if not await asyncio.to_thread(_same_file, source, stored):
        raise BenchError("the stored file differs from the source")
    return result


HALF_RATE_CPU = (Metric("half_rate_server_cpu", "server CPU at half rate", "%"),
                 Metric("half_rate_loadgen_cpu", "load generator CPU at half rate", "%"))


def fixed_rate_metrics(rates: tuple[float, ...]) -> tuple[Metric, ...]:
    """The figures of fan-out's fixed-rate latency points."""
    return tuple(Metric(f"at{r:g}_{key}", f"{label} at {r:g} msg/s", unit) for r in rates
                 for key, label, unit in (("p50_ms", "p50", "ms"), ("p99_ms", "p99", "ms"),
                                          ("load", "share of its maximum", "x")))

SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("ws-fanout", "WebSocket fan-out, 1 publisher on 1 WebSocket, 256-byte messages; "
             "latency from the scheduled send, at half rate and at fixed rates",
             (DELIVERIES, PER_CORE, replace(P50, label="p50 at half rate"),
              replace(P99, label="p99 at half rate"),
              Metric("lag_p99_ms", "publisher's lag p99 at half rate", "ms"), *HALF_RATE_CPU,
              *fixed_rate_metrics(FULL.fixed_rates)),
             lambda: [hub("sqlite"), hub("memory"), hub("redis"), hub("redis", nodes=3)],
             _fanout_variants, _ws_fanout),
    Scenario("sse-fanout", "SSE fan-out, 1 publisher (HTTP), 256-byte messages",
             (DELIVERIES, replace(P99, label="p99 at half rate")),
             lambda: [hub("memory")],
             lambda size: [(f"N={size.sse_n}", {})], _sse_fanout),
    Scenario("http-publish", "HTTP publish, 100-byte JSON, keep-alive (wrk)",
             (Metric("requests_per_s", "requests/s", "/s"), P99),
             _engines(), _one, _wrk_publish),
    Scenario("long-poll", "Long polls waiting, then one publish: wake-up latency",
             (P50, P99, Metric("max_ms", "all answered", "ms")),
             _engines(), lambda size: [(f"{size.polls} polls", {})], _long_poll),
    Scenario("idle-ws", "Idle WebSocket connections, each subscribed to a topic of its own; "
             "then one publish to each topic",
             (Metric("kb_per_conn", "memory/conn", "KB"),
              Metric("socket_kb_per_conn", "kernel socket memory/conn (both ends)", "KB"),
              Metric("wake_p50_ms", "publish to its subscriber p50", "ms"),
              Metric("wake_p99_ms", "publish to its subscriber p99", "ms")),
             lambda: [hub("memory")],
             lambda size: [(f"{n} conns", {"n": n}) for n in size.idle_n], _idle_ws),
    Scenario("history", "Replay of stored messages from the start",
             (Metric("ws_msgs_per_s", "over WebSocket", "msg/s"),
              Metric("poll_msgs_per_s", "over long polling", "msg/s")),
             _engines("[namespaces.bench]\nhistory_size = 0\n"),
             lambda size: [(f"{size.history:,} msgs", {})], _history, prepare=_preload),
    Scenario("upload", "tus upload of one file in 8 MiB PATCHes, then checked byte for byte",
             (Metric("mb_per_s", "throughput", "MB/s"),),
             lambda: [hub("sqlite"), DISK],
             lambda size: [(f"{size.upload_mib} MiB", {})], _upload),
    Scenario("cluster", "Redis against SQLite: HTTP publish (wrk), then WebSocket fan-out; "
             "Redis with the subscribers on 1 and 3 nodes",
             (Metric("publish_per_s", "publish", "/s"),
              replace(P99, key="publish_p99_ms", label="publish p99"),
              DELIVERIES, replace(P99, label="fan-out p99 at half rate")),
             lambda: [hub("sqlite"), hub("redis"), hub("redis", nodes=3)],
             lambda size: [(f"N={size.cluster_n}", {"n": size.cluster_n})], _cluster),
    tls.SCENARIO,
]}
