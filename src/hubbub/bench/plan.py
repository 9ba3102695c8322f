"""What a benchmark is made of: the hub as a server under test, the sizes of
the full suite and of ``--quick``, the figures a scenario reports, one run,
and a scenario itself. The scenarios are in :mod:`.scenarios`."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .certs import files_in
from .procfs import Metrics
from .servers import CERT_DIR, BenchError, Served, Server, redis_server

HUB_DOORS = {
    "ws": "/v1/ws", "sse": "/v1/topics/{topic}/events", "publish": "/v1/topics/{topic}",
    "poll": "/v1/topics/{topic}/messages", "batch": "/v1/publish",
    # tus uploads; "upload_files" is where the files land, under the server's scratch dir
    "upload": "/v1/uploads/", "upload_files": "uploads",
}


def hub(engine: str, config: str = "", *, nodes: int = 1, tls: bool = False) -> Server:
    """The hub on ``engine`` (``memory``, ``sqlite`` or ``redis``) with a TOML ``config``.

    On ``redis``, ``nodes`` hub processes share one store on the benchmark's
    own redis-server (:func:`~.measure.redis_server`), under a key prefix of
    the run's own: the run's scratch directory, which all its nodes share.
    With ``tls`` it serves TLS (``--tls-cert``, ``--tls-key``: HTTP/1.1 and
    HTTP/2 by ALPN on one port) with the run's throwaway certificate.
    """

    def argv(port: int, scratch: Path) -> list[str]:
        (scratch / "hubbub.toml").write_text(config)
        if engine == "redis":
            store = f"{redis_server().url}?prefix={scratch.name}"
        else:
            store = "memory://" if engine == "memory" else f"sqlite:///{scratch / 'hub.db'}"
        tls_args = []
        if tls:
            files = files_in(scratch / CERT_DIR)
            tls_args = ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
        return [sys.executable, "-m", "hubbub", "serve", "--port", str(port),
                "--store", store, "--config", str(scratch / "hubbub.toml"), *tls_args]

    if engine != "redis":
        name = f"hubbub ({engine})"
        return Server(tls_name(name) if tls else name, argv, HUB_DOORS, tls=tls)
    name = "hubbub (redis)" if nodes == 1 else f"hubbub (redis, {nodes} nodes)"
    return Server(name, argv, HUB_DOORS, nodes=nodes, store_pid=lambda: redis_server().pid)


def tls_name(name: str) -> str:
    """The name of the TLS twin of the server ``name``: ``hubbub (memory, TLS)``."""
    return name[:-1] + ", TLS)" if name.endswith(")") else name + " (TLS)"


@dataclass(frozen=True, slots=True)
class Size:
    """How big and how long: the full suite, or ``--quick`` for a smoke test."""

    fanout_n: tuple[int, ...] = (100, 1000)
    sse_n: int = 1000
    polls: int = 10_000
    idle: int = 10_000
    #: The idle-ws variants: 10,000, and the scale of one box.
    idle_n: tuple[int, ...] = (10_000, 100_000)
    history: int = 1_000_000
    warmup: float = 2.0
    seconds: float = 5.0
    latency_seconds: float = 4.0
    settle: float = 3.0
    upload_mib: int = 512
    #: WebSocket subscribers of the cluster scenario (spread evenly over the nodes).
    cluster_n: int = 1000
    #: The fixed rates (messages/s) of WebSocket fan-out's latency points, for
    #: the largest N, beside the half-rate one: the same for every server.
    fixed_rates: tuple[float, ...] = (50, 500, 2000)
    #: The fewest messages of a paced latency phase of the WebSocket fan-out:
    #: a slow rate runs longer than ``latency_seconds`` (50 msg/s: 10 s), so
    #: that its p99 is not the tail of a couple of messages.
    paced_min: int = 500
    #: WebSocket subscribers of the TLS rows' fan-out (Python clients: fewer).
    tls_n: int = 100
    runs: int = 3


FULL = Size()
QUICK = Size(fanout_n=(50,), sse_n=100, polls=500, idle=500, idle_n=(500,), history=20_000,
             warmup=0.5, seconds=1.0, latency_seconds=1.0, settle=1.0, upload_mib=64,
             cluster_n=60, fixed_rates=(50,), paced_min=0, tls_n=20, runs=1)


@dataclass(frozen=True, slots=True)
class Metric:
    """A figure a scenario reports: its key in a run's metrics, its label and unit."""

    key: str
    label: str
    unit: str


@dataclass(frozen=True, slots=True)
class Run:
    """One repetition of a variant: the server, the variant's parameters, the sizes."""

    served: Served
    params: Mapping[str, Any]
    size: Size


@dataclass(frozen=True, slots=True)
class Scenario:
    """A scenario: the hub's own servers, the variants, and how one run measures."""

    name: str
    title: str
    metrics: tuple[Metric, ...]
    servers: Callable[[], list[Server]]
    variants: Callable[[Size], list[tuple[str, dict[str, Any]]]]
    measure: Callable[[Run], Awaitable[Metrics]]
    #: Run once per server start before the measured runs (:mod:`hubbub.bench`,
    #: trade-off "load the store once").
    prepare: Callable[[Run], Awaitable[None]] | None = None


def check(result: Metrics, *keys: str) -> None:
    """Refuse a run in which something was lost, cut off or wrong."""
    bad = {k: result[k] for k in keys if result.get(k)}
    if bad:
        raise BenchError("invalid run: " + ", ".join(f"{k}={v:g}" for k, v in bad.items()))


# At most this many messages in flight while the fan-out publisher runs flat


DELIVERIES = Metric("deliveries_per_s", "deliveries/s", "/s")
PER_CORE = Metric("deliveries_per_core_s", "deliveries per server core-second", "/s")
P50, P99 = Metric("p50_ms", "p50", "ms"), Metric("p99_ms", "p99", "ms")
#: The CPU of the server and of the load generator while they pace at half rate.
